"""Grams: parity with pytorch_optimizer (paper's eps placement), the official code's equations, behaviour."""
from __future__ import annotations

import math

import pytest
import torch

import gradkit
from support import (
    adamw_moment_bytes,
    digits_batches,
    max_relative_difference,
    mlp,
    run_quadratic,
    side_by_side,
    synthetic_batches,
    train,
    twin,
)


def official_grams_step(params, states, lr, betas, eps, weight_decay, correct_bias=True):
    """The official code's update (github.com/Gunale0926/Grams), one tensor at a time."""
    b1, b2 = betas
    for p in params:
        g = p.grad
        s = states.setdefault(p, {"step": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)})
        s["step"] += 1
        p.mul_(1 - lr * weight_decay)
        s["m"].mul_(b1).add_(g, alpha=1 - b1)
        s["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = s["v"].sqrt() + eps
        step_size = lr
        if correct_bias:
            step_size = lr * math.sqrt(1 - b2 ** s["step"]) / (1 - b1 ** s["step"])
        p.add_(g.sign() * s["m"].abs() / denom, alpha=-step_size)


def test_parity_with_pytorch_optimizer_paper_eps():
    po = pytest.importorskip("pytorch_optimizer", reason="pytorch_optimizer is the reference implementation of Grams")
    model = mlp()
    reference = twin(model)
    ours = gradkit.optim.Grams(model.parameters(), lr=3e-3, weight_decay=0.01, eps_placement="paper")
    theirs = po.Grams(reference.parameters(), lr=3e-3, weight_decay=0.01)
    train(model, ours, 200, digits_batches())
    train(reference, theirs, 200, digits_batches())
    assert max_relative_difference(model, reference) <= 1e-5


@pytest.mark.parametrize("correct_bias", [True, False])
def test_matches_official_code_equations(correct_bias):
    model = mlp()
    reference = twin(model)
    opt = gradkit.optim.Grams(model.parameters(), lr=3e-3, weight_decay=0.01, correct_bias=correct_bias)
    states: dict = {}
    batches = digits_batches()  # sign-based: random labels make near-zero gradients whose sign is rounding noise

    @torch.no_grad()
    def reference_step():
        official_grams_step(list(reference.parameters()), states, 3e-3, (0.9, 0.999), 1e-6, 0.01, correct_bias)

    assert side_by_side(model, opt, reference, reference_step, batches) <= 1e-5


def test_direction_is_the_current_gradient_sign():
    w = torch.nn.Parameter(torch.zeros(4))
    opt = gradkit.optim.Grams([w], lr=0.1)
    w.grad = torch.tensor([1.0, 1.0, 1.0, 1.0])
    opt.step()
    w.grad = torch.tensor([-1.0, 2.0, 0.0, -0.5])  # momentum still points the old way for most coordinates
    before = w.detach().clone()
    opt.step()
    step = w.detach() - before
    assert torch.equal(torch.sign(step), -torch.sign(w.grad))


def test_reduces_loss():
    first, last = run_quadratic(lambda p: gradkit.optim.Grams(p, lr=0.05))
    assert last < 0.1 * first
    model = mlp()
    losses = train(model, gradkit.optim.Grams(model.parameters(), lr=1e-2), 40, digits_batches())
    assert losses[-1] < 0.5 * losses[0]


def test_state_is_two_moments_like_adamw():
    model = mlp()
    opt = gradkit.optim.Grams(model.parameters())
    train(model, opt, 1, synthetic_batches(1))
    n = sum(p.numel() for p in model.parameters())
    assert opt.state_bytes(by="kind")["moment"] == 8 * n == adamw_moment_bytes(mlp())


def test_bad_arguments_raise():
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="eps_placement"):
        gradkit.optim.Grams([w], eps_placement="middle")
    with pytest.raises(ValueError, match="betas"):
        gradkit.optim.Grams([w], betas=(0.9, 1.5))
