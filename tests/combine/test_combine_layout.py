"""Every aggregator must give the same per-entry update whatever the parameter layout."""
from __future__ import annotations

import pytest
import torch

from gradkit import combine

SHAPES = [(3, 4), (5,), (2, 3, 2), (1,)]
N = sum(torch.Size(s).numel() for s in SHAPES)


def make_losses(flat_params, m, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, N, generator=g, dtype=torch.float64)
    b = torch.randn(m, N, generator=g, dtype=torch.float64)

    def losses():
        theta = flat_params()
        return [(a[i] @ theta) + 0.5 * ((b[i] * theta) ** 2).sum() + 1.0 for i in range(m)]

    return losses


def build(name):
    return combine.get_aggregator(name, **({"seed": 0} if name == "pcgrad" else {}))


@pytest.mark.parametrize("name", sorted(combine.AGGREGATORS))
def test_one_tensor_or_many_give_the_same_update(name):
    m = 2 if name in ("bloop", "orthogonal", "semi_gradient", "true_gradient") else 3
    init = torch.randn(N, dtype=torch.float64, generator=torch.Generator().manual_seed(7))

    single = init.clone().requires_grad_(True)
    pieces = [t.clone().reshape(s).requires_grad_(True) for t, s in zip(init.split([torch.Size(s).numel() for s in SHAPES]), SHAPES)]

    loss_single = make_losses(lambda: single, m, 1)
    loss_many = make_losses(lambda: torch.cat([p.reshape(-1) for p in pieces]), m, 1)

    agg_single, agg_many = build(name), build(name)
    for _ in range(3):  # several steps, so stateful aggregators (Bloop, GradNorm) are exercised
        single.grad = None
        for p in pieces:
            p.grad = None
        combine.backward(loss_single(), [single], agg_single)
        combine.backward(loss_many(), pieces, agg_many)
        many = torch.cat([p.grad.reshape(-1) for p in pieces])
        torch.testing.assert_close(single.grad, many, rtol=1e-10, atol=1e-12)
        with torch.no_grad():
            single -= 0.01 * single.grad
            for p in pieces:
                p -= 0.01 * p.grad


def test_gradnorm_layer_as_one_tensor_or_split():
    init = torch.randn(N, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    head = torch.randn(4, dtype=torch.float64, requires_grad=True)
    single = init.clone().requires_grad_(True)
    pieces = [t.clone().reshape(s).requires_grad_(True) for t, s in zip(init.split([torch.Size(s).numel() for s in SHAPES]), SHAPES)]
    ls = make_losses(lambda: single, 3, 2)
    lm = make_losses(lambda: torch.cat([p.reshape(-1) for p in pieces]), 3, 2)
    a1 = combine.GradNorm(layer=[single])
    a2 = combine.GradNorm(layer=pieces)
    for _ in range(3):
        combine.backward([l + head.sum() ** 2 for l in ls()], [single, head], a1)
        combine.backward([l + head.sum() ** 2 for l in lm()], pieces + [head], a2)
    torch.testing.assert_close(a1.loss_weights, a2.loss_weights)
    torch.testing.assert_close(single.grad, torch.cat([p.grad.reshape(-1) for p in pieces]))
