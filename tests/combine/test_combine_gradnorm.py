from __future__ import annotations

import pytest
import torch

from gradkit import combine
from gradkit.combine import GradNorm


def test_one_step_by_hand():
    # Two tasks whose layer gradients have norms 1 and 3; losses halved / unchanged.
    jac = torch.tensor([[1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    agg = GradNorm(alpha=1.0, lr=0.1)
    first = agg(jac, combine.Context(jac, losses=torch.tensor([2.0, 4.0], dtype=torch.float64)))
    torch.testing.assert_close(first, jac.sum(0))  # weights start at 1
    # Step 1: ratios [1, 1], target = mean(1, 3) = 2, grad_w = [sign(-1)*1, sign(1)*3] = [-1, 3]
    torch.testing.assert_close(agg.loss_weights, torch.tensor([1.1, 0.7], dtype=torch.float64) * (2 / 1.8))
    w = agg.loss_weights.clone()
    second = agg(jac, combine.Context(jac, losses=torch.tensor([1.0, 4.0], dtype=torch.float64)))
    torch.testing.assert_close(second, w @ jac)
    # Step 2: task 0 trains faster (ratio 0.5 vs 1) so its target shrinks relative to task 1.
    g = w * torch.tensor([1.0, 3.0], dtype=torch.float64)
    r = torch.tensor([0.5, 1.0], dtype=torch.float64) / 0.75
    target = g.mean() * r
    new = w - 0.1 * torch.sign(g - target) * torch.tensor([1.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(agg.loss_weights, new * 2 / new.sum())


def test_weights_sum_to_the_number_of_tasks_and_balance_norms():
    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([1.0, 10.0, 0.1])
    agg = GradNorm(alpha=0.0, lr=0.01)
    for _ in range(400):
        jac = scales[:, None] * torch.randn(3, 20, generator=gen).abs()
        agg(jac, combine.Context(jac, losses=torch.ones(3)))
        assert float(agg.loss_weights.sum()) == pytest.approx(3.0, rel=1e-5)
    # With alpha = 0 GradNorm equalises w_i ||g_i||: weights end up inversely ordered to scales.
    w = agg.loss_weights
    assert w[2] > w[0] > w[1]


def test_layer_selects_columns_and_is_required_to_be_shared():
    torch.manual_seed(0)
    trunk = torch.nn.Linear(3, 4)
    head = torch.nn.Linear(4, 1)
    x = torch.randn(8, 3)
    h = trunk(x)
    out = head(h)
    losses = [out.pow(2).mean() + 0.1, (h.mean() - 1).pow(2) + 0.1]
    agg = GradNorm(layer=trunk.parameters())
    info = combine.backward(losses, list(trunk.parameters()) + list(head.parameters()), agg)
    assert info.extra["layer_grad_norms"].shape == (2,)
    other = torch.nn.Linear(2, 2)
    agg2 = GradNorm(layer=other.parameters())
    h = trunk(x)
    with pytest.raises(ValueError, match="not among the shared params"):
        combine.backward([h.pow(2).sum(), h.pow(2).mean()], list(trunk.parameters()), agg2)


def test_needs_losses_and_state_round_trip():
    p = torch.zeros(4, requires_grad=True)
    jac = torch.randn(2, 4)
    with pytest.raises(ValueError, match="losses"):
        combine.backward_from_gradients(jac, [p], GradNorm())
    assert p.grad is None
    agg = GradNorm(2)
    combine.backward_from_gradients(jac, [p], agg, losses=[1.0, 2.0])
    saved = agg.state_dict()
    other = GradNorm(2)
    other.load_state_dict(saved)
    torch.testing.assert_close(other.loss_weights, agg.loss_weights)
    torch.testing.assert_close(other.initial_losses, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="tasks"):
        agg(torch.randn(3, 4), combine.Context(torch.randn(3, 4), losses=torch.ones(3)))
    with pytest.raises(ValueError, match="positive"):
        GradNorm()(jac, combine.Context(jac, losses=torch.tensor([0.0, 1.0])))
    with pytest.raises(ValueError, match="alpha"):
        GradNorm(alpha=-1)
