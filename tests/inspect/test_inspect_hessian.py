from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradkit.inspect import HessianOperator, hessian_vector_product

from inspect_helpers import small_batch, small_mlp


@pytest.mark.parametrize("method", ["double_backward", "func"])
def test_hvp_matches_exact_hessian(mlp_problem, method):
    model, batch, h, _ = mlp_problem
    op = HessianOperator(model, F.cross_entropy, batch, method=method)
    v = torch.randn(op.size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(op.matvec(v), h @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op.matvec(2 * v), 2 * (h @ v), rtol=1e-10, atol=1e-12)
    assert op.num_hvps == 2


@pytest.mark.parametrize("method", ["double_backward", "func"])
def test_iterable_of_batches_is_weighted_by_batch_size(mlp_problem, method):
    model, (x, y), h, g = mlp_problem
    # Unequal batch sizes: a plain average of per-batch Hessians would be wrong.
    chunks = [(x[:3], y[:3]), (x[3:13], y[3:13]), (x[13:], y[13:])]
    op = HessianOperator(model, F.cross_entropy, chunks, method=method)
    v = torch.randn(op.size, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(op.matvec(v), h @ v, rtol=1e-10, atol=1e-12)
    loss, grad = op.loss_and_gradient()
    torch.testing.assert_close(grad, g, rtol=1e-10, atol=1e-12)
    assert loss == pytest.approx(float(F.cross_entropy(model(x), y).detach()), rel=1e-12)


def test_batch_norm_statistics_params_and_grads_are_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3)).double().train()
    x, y = small_batch()
    F.cross_entropy(model(x), y).backward()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    for method in ("double_backward", "func"):
        op = HessianOperator(model, F.cross_entropy, [(x[:12], y[:12]), (x[12:], y[12:])], method=method)
        op.matvec(torch.ones(op.size, dtype=torch.float64))
        op.loss_and_gradient()
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert model[1].track_running_stats


def test_functional_form_accepts_lists_and_subsets(mlp_problem):
    model, batch, h, _ = mlp_problem
    vec = [torch.ones_like(p) for p in model.parameters()]
    out = hessian_vector_product(model, F.cross_entropy, batch, vec)
    assert [o.shape for o in out] == [p.shape for p in model.parameters()]
    torch.testing.assert_close(torch.cat([o.reshape(-1) for o in out]), h @ torch.ones(h.shape[0], dtype=h.dtype))
    # Hessian restricted to the last layer is the matching diagonal block.
    op = HessianOperator(model, F.cross_entropy, batch, params=["2.weight", "2.bias"])
    start = sum(p.numel() for p in list(model.parameters())[:2])
    block = h[start:, start:]
    v = torch.randn(op.size, dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), block @ v)


def test_bad_input_raises_with_names():
    model = small_mlp()
    batch = small_batch()
    with pytest.raises(ValueError, match="method must be one of"):
        HessianOperator(model, F.cross_entropy, batch, method="fd")
    with pytest.raises(ValueError, match="params must name"):
        HessianOperator(model, F.cross_entropy, batch, params=["nope"])
    with pytest.raises(TypeError, match="re-iterable"):
        HessianOperator(model, F.cross_entropy, (b for b in [batch]))
    op = HessianOperator(model, F.cross_entropy, batch)
    with pytest.raises(ValueError, match="vector must be a flat tensor"):
        op.matvec(torch.ones(3, dtype=torch.float64))
    assert op.num_hvps == 0
