"""GradSign equals sum_k |sum_i sign(g_ik)| on a two-layer example, computed by hand."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradkit.inspect.gradsign import gradsign, kendall_tau


def test_equals_its_formula_on_a_two_layer_network():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.randn(9, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    w1, b1, w2, b2 = (p.detach() for p in model.parameters())
    signs_w1, signs_w2 = torch.zeros_like(w1), torch.zeros_like(w2)
    for i in range(9):  # the per-sample gradients of cross-entropy, written out
        z = w1 @ x[i] + b1
        h = z.clamp_min(0)
        p = torch.softmax(w2 @ h + b2, 0)
        d_out = p - F.one_hot(y[i], 3).double()
        d_z = (w2.T @ d_out) * (z > 0)
        signs_w2 += torch.sign(torch.outer(d_out, h))
        signs_w1 += torch.sign(torch.outer(d_z, x[i]))
    expected = signs_w1.abs().sum() + signs_w2.abs().sum()
    assert gradsign(model, x, y, chunk_size=4) == pytest.approx(expected.item())
    # every parameter: the biases join
    assert gradsign(model, x, y, parameters="all") > gradsign(model, x, y)


def test_bounds_and_agreement():
    model = nn.Linear(3, 2, bias=False)
    x = torch.ones(5, 3)
    y = torch.zeros(5, dtype=torch.long)
    # identical samples: every weight's signs agree, so the score is n * (#weights with a nonzero gradient)
    assert gradsign(model, x, y) == 5 * 6


def test_kendall_tau_matches_scipy():
    stats = pytest.importorskip("scipy.stats", reason="scipy is the reference for Kendall's tau-b")
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (30,), generator=gen).tolist()  # with ties
    b = torch.randn(30, generator=gen).tolist()
    assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)


def test_bad_input():
    with pytest.raises(ValueError, match="parameters"):
        gradsign(nn.Linear(2, 2), torch.randn(3, 2), torch.zeros(3, dtype=torch.long), parameters="weight")
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1, 2], [1, 2, 3])
