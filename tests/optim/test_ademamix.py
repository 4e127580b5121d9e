"""AdEMAMix against ``pytorch_optimizer.AdEMAMix`` (without warm-ups) and against the paper's equations
(with warm-ups): pytorch_optimizer's beta3 schedule omits the official code's 1e-8 inside the logarithm
and ties both warm-ups to one length, so with warm-ups it departs from the official code by ~1e-5."""
from __future__ import annotations

import math

import pytest
import torch

from gradkit.optim import AdEMAMix, AdamW
from gradkit.transforms.ademamix import alpha_warmup, beta3_warmup

from support import check_reduces_losses, check_rejects, check_staggered_steps, check_state_bytes, parity, smooth_net

TOL = 1e-5


class PaperAdEMAMix(torch.optim.Optimizer):
    """Algorithm 1 of the paper with the official PyTorch code's schedulers, one parameter at a time."""

    def __init__(self, params, lr, betas, alpha, t_alpha, t_beta3, eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, alpha=alpha, t_alpha=t_alpha, t_beta3=t_beta3, eps=eps,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2, b3_end = group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m1=torch.zeros_like(p), m2=torch.zeros_like(p), nu=torch.zeros_like(p))
                state["t"] += 1
                t, g = state["t"], p.grad
                a = min(t / group["t_alpha"], 1.0)
                alpha = a * group["alpha"]
                if t < group["t_beta3"]:
                    s = t / group["t_beta3"]
                    f = lambda b: math.log(0.5) / math.log(b + 1e-8) - 1.0  # noqa: E731
                    b3 = 0.5 ** (1.0 / ((1 - s) * f(b1) + s * f(b3_end) + 1.0))
                else:
                    b3 = b3_end
                state["m1"] = b1 * state["m1"] + (1 - b1) * g
                state["m2"] = b3 * state["m2"] + (1 - b3) * g
                state["nu"] = b2 * state["nu"] + (1 - b2) * g * g
                m1_hat = state["m1"] / (1 - b1**t)
                nu_hat = state["nu"] / (1 - b2**t)
                u = (m1_hat + alpha * state["m2"]) / (nu_hat.sqrt() + group["eps"]) + group["weight_decay"] * p
                p.sub_(group["lr"] * u)


def test_schedules_match_the_paper():
    # f_beta3(t) = exp(ln b1 ln b3 / ((1 - t/T) ln b3 + (t/T) ln b1)) (the paper's closed form, no 1e-8)
    b1, b3, T = 0.9, 0.9999, 1000
    for t in (1, 10, 500, 999):
        closed = math.exp(math.log(b1) * math.log(b3) / ((1 - t / T) * math.log(b3) + t / T * math.log(b1)))
        # the official code's ln(b + 1e-8) moves b3(t) by a few 1e-6 relative
        assert beta3_warmup(t, b3, b1, T) == pytest.approx(closed, rel=1e-5)
        assert alpha_warmup(t, 8.0, T) == pytest.approx(8.0 * t / T)
    assert beta3_warmup(T, b3, b1, T) == b3 and alpha_warmup(T + 5, 8.0, T) == 8.0
    assert beta3_warmup(3, b3, b1, None) == b3 and alpha_warmup(3, 8.0, None) == 8.0


@pytest.mark.parametrize("betas", [(0.9, 0.999, 0.9999), (0.0, 0.999, 0.9999)])
def test_matches_reference(betas):
    po = pytest.importorskip("pytorch_optimizer", reason="parity needs pytorch-optimizer: pip install pytorch-optimizer")
    kw = dict(lr=1e-3, betas=betas, alpha=5.0, weight_decay=0.1)
    assert parity(lambda p: AdEMAMix(p, **kw),
                  lambda p: po.AdEMAMix(p, weight_decouple=True, foreach=False, **kw)) <= TOL


def test_warmups_match_the_paper_equations():
    kw = dict(lr=1e-3, betas=(0.9, 0.999, 0.9999), alpha=5.0, weight_decay=0.1)
    assert parity(lambda p: AdEMAMix(p, alpha_warmup=150, beta3_warmup=100, **kw),
                  lambda p: PaperAdEMAMix(p, t_alpha=150, t_beta3=100, **kw)) <= TOL


def test_behaviour():
    check_reduces_losses(lambda p: AdEMAMix(p, lr=0.05), lambda p: AdEMAMix(p, lr=1e-2))


def test_state_bytes():
    check_state_bytes(lambda p: AdEMAMix(p), tensors_per_param=3)
    # With b1 = 0 the fast EMA is not stored: the same memory as AdamW (the paper's claim).
    check_state_bytes(lambda p: AdEMAMix(p, betas=(0.0, 0.999, 0.9999)), tensors_per_param=2)
    model = smooth_net()
    ours, adamw = AdEMAMix(model.parameters(), betas=(0.0, 0.999, 0.9999)), AdamW(model.parameters())
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    ours.step()
    adamw.step()
    assert ours.state_bytes() == adamw.state_bytes()


def test_beta1_cannot_switch_from_zero_after_the_first_step():
    w = torch.nn.Parameter(torch.zeros(2))
    opt = AdEMAMix([w], betas=(0.0, 0.999, 0.9999))
    w.grad = torch.ones(2)
    opt.step()
    opt.param_groups[0]["betas"] = (0.9, 0.999, 0.9999)
    with pytest.raises(ValueError, match="betas"):
        opt.step()


def test_bad_arguments():
    check_rejects(AdEMAMix, alpha=-1.0)
    check_rejects(AdEMAMix, beta3_warmup=0)
    check_rejects(AdEMAMix, betas=(0.9, 0.999))


def test_tensors_at_different_steps():
    check_staggered_steps(lambda p: AdEMAMix(p, lr=0.1, alpha_warmup=5, beta3_warmup=5))
    check_staggered_steps(lambda p: AdEMAMix(p, lr=0.1, betas=(0.0, 0.999, 0.9999)))
