"""MARS, Cautious AdamW and AdamW (the base of both) against heavyball's versions, where heavyball's
equations are gradkit's up to a stated change of constants; SOAP and PSGD Kron differ from heavyball's by
design (docs/frontier.md, "Where references disagree"), and those gaps are measured by
benchmarks/frontier_parity.py, not asserted.

heavyball takes ``max(sqrt(v_hat), eps)`` where gradkit (and torch.optim) take ``sqrt(v_hat) + eps``, so
the comparisons run at ``eps = 1e-30``. heavyball's helpers are compiled by ``torch.compile`` by default;
they run eagerly here.
"""
from __future__ import annotations

import pytest
import torch

from gradkit.optim import MARS, AdamW, CautiousAdamW

from _frontier_support import cnn_parity

TOL = 1e-5
EPS = 1e-30


@pytest.fixture(scope="module")
def heavyball():
    hb = pytest.importorskip("heavyball", reason="comparison needs heavyball: pip install --no-deps heavyball opt_einsum")
    hb.utils.compile_mode = None
    hb.utils.compile_mode_recommended_to_none = None
    return hb


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adamw_matches_heavyball(heavyball, wd):
    assert cnn_parity(lambda p: AdamW(p, lr=1e-3, eps=EPS, weight_decay=wd),
                      lambda p: heavyball.AdamW(p, lr=1e-3, betas=(0.9, 0.999), eps=EPS, weight_decay=wd)) <= TOL


@pytest.mark.parametrize("b1,gamma", [(0.95, 0.025), (0.9, 0.05)])
def test_mars_matches_heavyball_with_its_coefficient(heavyball, b1, gamma):
    # heavyball's correction is c = g + gamma b1 / (1 - gamma) (g - g_prev), unclipped; the paper's (and
    # gradkit's) is g + gamma' b1 / (1 - b1) (g - g_prev), clipped to norm 1: gamma' = gamma (1 - b1) / (1 - gamma)
    # gives the same c, and the smooth CNN's corrections stay below norm 1.
    mapped = gamma * (1 - b1) / (1 - gamma)
    assert cnn_parity(lambda p: MARS(p, lr=1e-3, betas=(b1, 0.99), eps=EPS, gamma=mapped, optimize_1d=True),
                      lambda p: heavyball.AdamW(p, lr=1e-3, betas=(b1, 0.99), eps=EPS, weight_decay=0.0, mars=True,
                                                mars_gamma=gamma)) <= TOL


def test_cautious_adamw_differs_from_heavyball_by_its_mask_scale(heavyball):
    # Both zero the entries where the update and the gradient disagree in sign; the paper (and gradkit)
    # rescale the rest by n / (k + 1), heavyball by n / k (k = entries kept), so a step differs by (k + 1) / k.
    g1 = torch.tensor([1.0, 2.0, -1.0, 0.5, -0.3, 1.5, -2.0, 0.7])
    g2 = torch.tensor([-0.5, 2.0, 0.5, 0.5, -0.3, -0.2, -2.0, 0.7])  # 3 small flips: the momentum keeps g1's sign
    deltas = []
    for make in (lambda p: CautiousAdamW(p, lr=1e-2, eps=EPS, weight_decay=0.0),
                 lambda p: heavyball.AdamW(p, lr=1e-2, betas=(0.9, 0.999), eps=EPS, weight_decay=0.0, caution=True)):
        w = torch.nn.Parameter(torch.zeros(8))
        opt = make([w])
        w.grad = g1.clone()
        opt.step()
        before = w.detach().clone()
        w.grad = g2.clone()
        opt.step()
        deltas.append(w.detach() - before)
    ours, theirs = deltas
    kept = ours != 0
    assert kept.sum() == 5 and torch.equal(kept, theirs != 0)
    torch.testing.assert_close(theirs[kept], ours[kept] * 6 / 5, rtol=1e-5, atol=0.0)
