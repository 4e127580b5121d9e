"""AdaBelief against the official ``adabelief-pytorch`` package (bit-for-bit in practice)."""
from __future__ import annotations

import contextlib
import io

import pytest
import torch

from gradkit.optim import AdaBelief

from support import check_reduces_losses, check_rejects, check_staggered_steps, check_state_bytes, parity

TOL = 1e-5


def _official(params, **kw):
    module = pytest.importorskip("adabelief_pytorch",
                                 reason="parity needs the official AdaBelief package: pip install adabelief-pytorch")
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints its change log
        return module.AdaBelief(params, print_change_log=False, **kw)


@pytest.mark.parametrize("kw", [
    dict(),                                                             # rectified, decoupled decay (defaults)
    dict(rectify=False, amsgrad=True, weight_decay=1e-2),
    dict(amsgrad=True, weight_decay=1e-3, fixed_decay=True, eps=1e-8),
    dict(rectify=False, weight_decouple=False, weight_decay=1e-2),      # coupled L2
    dict(degenerated_to_sgd=False, weight_decay=1e-2),                  # no step before rho_t >= 5
])
def test_matches_official(kw):
    assert parity(lambda p: AdaBelief(p, lr=1e-2, **kw), lambda p: _official(p, lr=1e-2, **kw)) <= TOL


def test_eps_accumulates_in_the_belief_state():
    # The official package adds eps to s_t in place at every step; with a constant gradient the
    # residual g - m shrinks geometrically, so s_t approaches t * eps (times (1 - b2) weights).
    w = torch.nn.Parameter(torch.ones(3))
    opt = AdaBelief([w], lr=0.0, betas=(0.0, 0.5), eps=1e-3)
    for _ in range(4):
        w.grad = torch.full((3,), 2.0)
        opt.step()
    expected = 1e-3 * (1 + 0.5 + 0.25 + 0.125)  # b1 = 0: m = g, residual 0
    torch.testing.assert_close(opt.state[w]["belief.exp_avg_var"], torch.full((3,), expected))


def test_rectification_branches():
    # b2 = 0.999: rho_t < 5 for t <= 5 (SGD-like steps), adaptive from t = 6.
    w = torch.nn.Parameter(torch.zeros(1))
    opt = AdaBelief([w], lr=1.0, betas=(0.0, 0.999), degenerated_to_sgd=True)
    for t in range(1, 6):
        before = w.detach().clone()
        w.grad = torch.ones(1)
        opt.step()
        torch.testing.assert_close(before - w.detach(), torch.ones(1))  # m / (1 - b1^t) = g
    frozen = AdaBelief([torch.nn.Parameter(torch.zeros(1))], lr=1.0, degenerated_to_sgd=False)
    p = frozen.param_groups[0]["params"][0]
    p.grad = torch.ones(1)
    frozen.step()
    assert p.item() == 0.0


def test_behaviour():
    check_reduces_losses(lambda p: AdaBelief(p, lr=0.01), lambda p: AdaBelief(p, lr=0.03), quadratic_ratio=0.2,
                         mlp_ratio=0.95)  # the rectified default warms up slowly
    check_reduces_losses(lambda p: AdaBelief(p, lr=0.1, rectify=False), lambda p: AdaBelief(p, lr=1e-2, rectify=False))


def test_state_bytes():
    check_state_bytes(lambda p: AdaBelief(p), tensors_per_param=2)  # as Adam
    check_state_bytes(lambda p: AdaBelief(p, amsgrad=True), tensors_per_param=3)


def test_bad_arguments():
    check_rejects(AdaBelief, betas=(0.9, 1.0))
    check_rejects(AdaBelief, eps=-1.0)
    check_rejects(AdaBelief, rectify="yes")


def test_tensors_at_different_steps():
    check_staggered_steps(lambda p: AdaBelief(p, lr=0.1, weight_decay=0.1))
    check_staggered_steps(lambda p: AdaBelief(p, lr=0.1, rectify=False, amsgrad=True))
