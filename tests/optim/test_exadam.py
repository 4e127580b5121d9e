"""EXAdam against ``pytorch_optimizer.EXAdam`` (the current official code's equations), and the paper's
dynamic step size against a loop written from the paper."""
from __future__ import annotations

import math

import pytest
import torch

from gradkit.optim import EXAdam
from gradkit.transforms.exadam import dynamic_step_size

from support import check_reduces_losses, check_rejects, check_staggered_steps, check_state_bytes, parity

TOL = 1e-5


class PaperEXAdam(torch.optim.Optimizer):
    """Algorithm 1 of arXiv:2412.20302, one parameter at a time."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, dynamic=True):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.dynamic = dynamic

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            eps = group["eps"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                t, g = state["t"], p.grad
                p.mul_(1 - group["lr"] * group["weight_decay"])
                m = state["m"] = b1 * state["m"] + (1 - b1) * g
                v = state["v"] = b2 * state["v"] + (1 - b2) * g * g
                d1 = 1 + v / (v + eps) * b2**t
                d2 = 1 + m * m / (m * m + eps) * b1**t
                m_t, v_t, g_t = m / (1 - b1**t) * d1, v / (1 - b2**t) * d2, g / (1 - b1**t) * d1
                alpha = group["lr"] * (math.log(math.sqrt(2) * math.sqrt(t + 1)) if self.dynamic else 1.0)
                p.sub_(alpha * (m_t + g_t) / (v_t.sqrt() + eps))


@pytest.mark.parametrize("kw", [dict(), dict(weight_decay=0.1, betas=(0.8, 0.99))])
def test_matches_reference(kw):
    po = pytest.importorskip("pytorch_optimizer", reason="parity needs pytorch-optimizer: pip install pytorch-optimizer")
    assert parity(lambda p: EXAdam(p, lr=1e-3, **kw), lambda p: po.EXAdam(p, lr=1e-3, **kw)) <= TOL


def test_dynamic_step_size_matches_the_paper():
    kw = dict(lr=1e-3, weight_decay=0.1)
    assert parity(lambda p: EXAdam(p, dynamic_step_size=True, **kw), lambda p: PaperEXAdam(p, **kw)) <= TOL
    assert dynamic_step_size(1) == pytest.approx(math.log(2.0))


def test_behaviour():
    check_reduces_losses(lambda p: EXAdam(p, lr=0.05), lambda p: EXAdam(p, lr=1e-2))
    check_reduces_losses(lambda p: EXAdam(p, lr=0.02, dynamic_step_size=True),
                         lambda p: EXAdam(p, lr=5e-3, dynamic_step_size=True))


def test_state_bytes():
    check_state_bytes(lambda p: EXAdam(p), tensors_per_param=2)  # as Adam: the new terms are computed, not stored


def test_bad_arguments():
    check_rejects(EXAdam, eps=0.0)
    check_rejects(EXAdam, dynamic_step_size=1)


def test_tensors_at_different_steps():
    check_staggered_steps(lambda p: EXAdam(p, lr=0.1, dynamic_step_size=True))
