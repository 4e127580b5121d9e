"""Coherence equals its definition: identical gradients -> 1, orthogonal -> 1/m, and the vmap path
equals the explicit per-example gradients."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradkit.inspect.coherence import coherence, coherence_from_gradients


@pytest.mark.parametrize("m", [2, 5, 16])
def test_identical_gradients_give_one_and_orthogonal_give_one_over_m(m):
    g = torch.randn(7, generator=torch.Generator().manual_seed(m))
    assert coherence_from_gradients(g.expand(m, -1)).alpha == pytest.approx(1.0)
    assert coherence_from_gradients(g.expand(m, -1)).m_coherence == pytest.approx(m)
    q = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(0)))[0][:m]
    assert coherence_from_gradients(3.0 * q).alpha == pytest.approx(1.0 / m)
    assert coherence_from_gradients(q).m_coherence == pytest.approx(1.0)


def test_is_the_mean_pairwise_dot_product_over_the_mean_squared_norm():
    g = torch.randn(6, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    gram = g @ g.T
    assert coherence_from_gradients(g).alpha == pytest.approx((gram.mean() / gram.diagonal().mean()).item())
    opposite = torch.cat([g[:1], -g[:1]])
    assert coherence_from_gradients(opposite).alpha == pytest.approx(0.0, abs=1e-12)


def test_model_path_equals_explicit_per_example_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x = torch.randn(11, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (11,))
    rows = []
    for i in range(11):
        grads = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), list(model.parameters()))
        rows.append(torch.cat([gr.flatten() for gr in grads]))
    expected = coherence_from_gradients(torch.stack(rows))
    result = coherence(model, x, y, chunk_size=4)
    assert result.alpha == pytest.approx(expected.alpha, rel=1e-10) and result.m == 11
    assert all(p.grad is None for p in model.parameters())


def test_bad_input():
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="targets"):
        coherence(model, torch.randn(4, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk_size"):
        coherence(model, torch.randn(4, 3), torch.zeros(4, dtype=torch.long), chunk_size=0)
    with pytest.raises(ValueError, match="gradients"):
        coherence_from_gradients(torch.randn(3))


@pytest.mark.parametrize("module", ["gradkit.inspect.coherence", "gradkit.inspect.gradsign", "gradkit.inspect.similarity",
                                    "gradkit.losses"])
def test_docstring_examples_of_the_diagnostics(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted >= 1
