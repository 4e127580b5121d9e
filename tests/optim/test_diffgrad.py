"""diffGrad against the official ``diffGrad_v2.py`` equations. ``pytorch_optimizer.DiffGrad`` is not used
for parity: it adds 1e-15 to v_t inside the square root, which the official code does not, and which
moves the parameters of the test model by ~1e-4 relative over 200 steps."""
from __future__ import annotations

import math

import pytest
import torch

from gradkit.optim import DiffGrad

from support import check_reduces_losses, check_rejects, check_staggered_steps, check_state_bytes, parity

TOL = 1e-5


class OfficialEquations(torch.optim.Optimizer):
    """The update of the official diffGrad_v2.py, written out one parameter at a time."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p), prev=torch.zeros_like(p))
                state["t"] += 1
                t = state["t"]
                g = p.grad + group["weight_decay"] * p
                state["m"] = b1 * state["m"] + (1 - b1) * g
                state["v"] = b2 * state["v"] + (1 - b2) * g * g
                friction = 1.0 / (1.0 + torch.exp(-(state["prev"] - g).abs()))
                state["prev"] = g.clone()
                step = group["lr"] * math.sqrt(1 - b2**t) / (1 - b1**t)
                p.sub_(step * friction * state["m"] / (state["v"].sqrt() + group["eps"]))


@pytest.mark.parametrize("kw", [dict(), dict(weight_decay=1e-2, betas=(0.8, 0.99), eps=1e-6)])
def test_matches_official_equations(kw):
    assert parity(lambda p: DiffGrad(p, lr=1e-3, **kw), lambda p: OfficialEquations(p, lr=1e-3, **kw)) <= TOL


def test_friction_is_one_half_where_the_gradient_does_not_change():
    # Constant gradient: xi = sigmoid(0) = 1/2 from step 2 on, so the step is half of Adam's (eps aside).
    w = torch.nn.Parameter(torch.zeros(2))
    opt = DiffGrad([w], lr=0.1, eps=0.0)
    g = torch.tensor([2.0, -3.0])
    w.grad = g.clone()
    opt.step()  # step 1: previous gradient 0, xi = sigmoid(|g|)
    torch.testing.assert_close(w.detach(), -0.1 * torch.sigmoid(g.abs()) * g.sign())
    before = w.detach().clone()
    w.grad = g.clone()
    opt.step()
    torch.testing.assert_close(before - w.detach(), 0.05 * g.sign())


def test_decoupled_weight_decay_option():
    w = torch.nn.Parameter(torch.ones(2))
    opt = DiffGrad([w], lr=0.1, weight_decay=0.5, decoupled_weight_decay=True)
    w.grad = torch.zeros(2)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((2,), 1 - 0.1 * 0.5))


def test_behaviour():
    check_reduces_losses(lambda p: DiffGrad(p, lr=0.05), lambda p: DiffGrad(p, lr=1e-2))


def test_state_bytes():
    check_state_bytes(lambda p: DiffGrad(p), tensors_per_param=3)  # Adam's two moments and the previous gradient


def test_bad_arguments():
    check_rejects(DiffGrad, betas=(0.9, -0.1))
    check_rejects(DiffGrad, weight_decay=-1.0)


def test_tensors_at_different_steps():
    check_staggered_steps(lambda p: DiffGrad(p, lr=0.1, weight_decay=0.1))
