"""AdaMomentum: against the paper's Algorithm 1 (no reference package has it), behaviour, memory."""
from __future__ import annotations

import math

import pytest
import torch

import gradkit
from support import adamw_moment_bytes, digits_batches, mlp, run_quadratic, side_by_side, synthetic_batches, train, twin


def paper_step(params, states, lr, betas, eps, weight_decay, decoupled, amsgrad):
    """Algorithm 1 of arXiv:2106.11514, one tensor at a time."""
    b1, b2 = betas
    for p in params:
        g = p.grad.clone()
        s = states.setdefault(p, {"t": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p), "vmax": torch.zeros_like(p)})
        s["t"] += 1
        if weight_decay and not decoupled:
            g = g + weight_decay * p
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * s["m"] ** 2 + eps
        v = s["v"]
        if amsgrad:
            s["vmax"] = torch.maximum(s["vmax"], s["v"])
            v = s["vmax"]
        m_hat = s["m"] / (1 - b1 ** s["t"])
        v_hat = v / (1 - b2 ** s["t"])
        if weight_decay and decoupled:
            p.mul_(1 - lr * weight_decay)
        p.sub_(lr * m_hat / v_hat.sqrt())


@pytest.mark.parametrize("decoupled,amsgrad,wd", [(False, False, 0.0), (False, False, 1e-2), (True, False, 1e-2), (False, True, 0.0)])
def test_matches_paper_equations(decoupled, amsgrad, wd):
    model = mlp()
    reference = twin(model)
    opt = gradkit.optim.AdaMomentum(model.parameters(), lr=2e-3, weight_decay=wd, amsgrad=amsgrad,
                                    decoupled_weight_decay=decoupled)
    states: dict = {}

    @torch.no_grad()
    def reference_step():
        paper_step(list(reference.parameters()), states, 2e-3, (0.9, 0.999), 1e-8, wd, decoupled, amsgrad)

    assert side_by_side(model, opt, reference, reference_step, synthetic_batches()) <= 1e-5


def test_first_step_is_lr_over_one_minus_beta1():
    # t=1: m = (1 - b1) g and v = (1 - b2) m^2 + eps, so m_hat / sqrt(v_hat) = g / sqrt((1 - b1)^2 g^2 + eps / (1 - b2)):
    # the second moment of the (uncorrected) momentum makes the first step lr / (1 - b1) per coordinate.
    w = torch.nn.Parameter(torch.zeros(3))
    w.grad = torch.tensor([1.0, -2.0, 0.5])
    gradkit.optim.AdaMomentum([w], lr=0.1).step()
    g = w.grad
    expected = -0.1 * g / torch.sqrt(0.01 * g**2 + 1e-8 / 0.001)
    assert torch.allclose(w.detach(), expected, rtol=1e-6)
    assert math.isclose(abs(w[0].item()), 0.1 / (1 - 0.9), rel_tol=1e-3)


def test_reduces_loss():
    first, last = run_quadratic(lambda p: gradkit.optim.AdaMomentum(p, lr=0.05))
    assert last < 0.1 * first
    model = mlp()
    losses = train(model, gradkit.optim.AdaMomentum(model.parameters(), lr=1e-2), 40, digits_batches())
    assert losses[-1] < 0.5 * losses[0]


def test_state_is_two_moments_like_adamw():
    model = mlp()
    opt = gradkit.optim.AdaMomentum(model.parameters())
    train(model, opt, 1, synthetic_batches(1))
    assert opt.state_bytes(by="kind")["moment"] == adamw_moment_bytes(mlp())
