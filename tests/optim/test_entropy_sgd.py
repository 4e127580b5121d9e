"""Entropy-SGD (Chaudhari et al., arXiv:1611.01838): the SGLD inner loop equals Algorithm 1 unrolled by hand."""
import pytest
import torch

import gradkit
from gradkit.optim import EntropySGD


def _problem():
    torch.manual_seed(0)
    a = torch.randn(6, 6, dtype=torch.float64)
    h = a @ a.T / 6 + torch.eye(6, dtype=torch.float64)
    batches = [torch.randn(6, dtype=torch.float64) * 0.1 for _ in range(40)]
    return h, batches


def _by_hand(x0, h, batches, outer_steps, L, gamma0, gamma1, eta_in, eps, alpha, lr, seed):
    gen = torch.Generator().manual_seed(seed)
    x, gamma, k = x0.clone(), gamma0, 0
    for _ in range(outer_steps):
        xp, mu = x.clone(), x.clone()
        for _ in range(L):
            grad = h @ xp + batches[k % len(batches)]
            k += 1
            xp = xp - eta_in * (grad - gamma * (x - xp))
            xp = xp + (eta_in ** 0.5) * eps * torch.randn(6, generator=gen, dtype=torch.float64)
            mu = (1 - alpha) * mu + alpha * xp
        x = x - lr * gamma * (x - mu)
        gamma *= 1 + gamma1
    return x, gamma


@pytest.mark.parametrize("eps", [0.0, 1e-2])
def test_inner_loop_and_outer_step_match_algorithm_1(eps):
    h, batches = _problem()
    x0 = torch.randn(6, dtype=torch.float64)
    expected, gamma = _by_hand(x0, h, batches, 3, 7, 0.5, 0.1, 0.05, eps, 0.75, 0.8, seed=3)

    w = torch.nn.Parameter(x0.clone())
    opt = EntropySGD(gradkit.optim.SGD([w], lr=0.8), langevin_steps=7, gamma=0.5, gamma_growth=0.1, inner_lr=0.05,
                     noise=eps, alpha=0.75, generator=torch.Generator().manual_seed(3))
    calls = {"k": 0}

    def closure():
        opt.zero_grad()
        b = batches[calls["k"] % len(batches)]
        calls["k"] += 1
        loss = 0.5 * w @ h @ w + b @ w
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    assert calls["k"] == 21
    torch.testing.assert_close(w.detach(), expected, rtol=1e-12, atol=1e-12)
    assert opt.gamma == pytest.approx(gamma)


def test_outer_optimizer_sees_the_local_entropy_gradient():
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    outer = gradkit.optim.Adam([w], lr=0.1)
    opt = EntropySGD(outer, langevin_steps=3, gamma=2.0, noise=0.0)

    def closure():
        opt.zero_grad()
        loss = (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    # Adam's first moment is (1 - b1) g with g = gamma (x - mu): same signs as x (mu is pulled towards 0)
    m = outer.state[w]["adam.exp_avg"]
    assert (m.sign() == torch.tensor([1.0, -1.0])).all()
    assert w.grad is not None and torch.equal(outer.state[w]["adam.exp_avg"], 0.1 * w.grad)


def test_requires_closure_and_checks_arguments():
    w = torch.nn.Parameter(torch.ones(2))
    opt = EntropySGD(torch.optim.SGD([w], lr=0.1))
    with pytest.raises(ValueError, match="closure"):
        opt.step(None)
    for bad in ({"langevin_steps": 0}, {"gamma": 0.0}, {"alpha": 1.5}, {"noise": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            EntropySGD(torch.optim.SGD([w], lr=0.1), **bad)
