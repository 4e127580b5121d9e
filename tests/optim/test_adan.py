"""Adan against ``pytorch_optimizer.Adan``, whose equations are the official code's (sail-sg/Adan:
same moments, bias corrections, proximal / no_prox decay and first-step handling)."""
from __future__ import annotations

import pytest
import torch

from gradkit.optim import Adan

from support import check_reduces_losses, check_rejects, check_staggered_steps, check_state_bytes, parity

TOL = 1e-5


def _reference():
    return pytest.importorskip("pytorch_optimizer", reason="parity needs pytorch-optimizer: pip install pytorch-optimizer")


@pytest.mark.parametrize("kw, ref_kw", [
    (dict(weight_decay=0.02), dict(weight_decay=0.02)),                                 # proximal decay
    (dict(weight_decay=0.02, no_prox=True), dict(weight_decay=0.02, weight_decouple=True)),
    (dict(max_grad_norm=0.5), dict(max_grad_norm=0.5)),
])
def test_matches_reference(kw, ref_kw):
    po = _reference()
    assert parity(lambda p: Adan(p, lr=1e-2, **kw), lambda p: po.Adan(p, lr=1e-2, **ref_kw)) <= TOL


def test_first_steps_follow_the_equations():
    b1, b2, b3 = 0.98, 0.92, 0.99
    w = torch.nn.Parameter(torch.zeros(2))
    opt = Adan([w], lr=0.1, betas=(b1, b2, b3), eps=0.0, weight_decay=0.5)
    g1, g2 = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 1.0])
    m = v = n = torch.zeros(2)
    p = torch.zeros(2)
    for t, (g, d) in enumerate([(g1, torch.zeros(2)), (g2, g2 - g1)], start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * d
        n = b3 * n + (1 - b3) * (g + b2 * d) ** 2
        u = (m / (1 - b1**t) + b2 * v / (1 - b2**t)) / (n / (1 - b3**t)).sqrt()
        p = (p - 0.1 * u) / (1 + 0.1 * 0.5)
        w.grad = g.clone()
        opt.step()
        torch.testing.assert_close(w.detach(), p)


def test_restart_starts_afresh():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(3))
    opt = Adan([w], lr=0.1)
    for _ in range(3):
        w.grad = torch.randn(3)
        opt.step()
    opt.restart()
    start = w.detach().clone()
    g = torch.randn(3)
    w.grad = g.clone()
    opt.step()
    fresh_w = torch.nn.Parameter(start.clone())
    fresh = Adan([fresh_w], lr=0.1)
    fresh_w.grad = g.clone()
    fresh.step()
    torch.testing.assert_close(w.detach(), fresh_w.detach(), rtol=0, atol=0)


def test_behaviour():
    check_reduces_losses(lambda p: Adan(p, lr=0.2), lambda p: Adan(p, lr=1e-2))


def test_state_bytes():
    # m, v (difference), n and the previous gradient: four tensors per parameter, twice Adam's.
    check_state_bytes(lambda p: Adan(p), tensors_per_param=4)


def test_bad_arguments():
    check_rejects(Adan, betas=(0.9, 0.9))
    check_rejects(Adan, eps=-1.0)
    with pytest.raises(ValueError, match="max_grad_norm"):
        Adan([torch.nn.Parameter(torch.zeros(1))], max_grad_norm=-1.0)


def test_tensors_at_different_steps():
    check_staggered_steps(lambda p: Adan(p, lr=0.1, weight_decay=0.1))
