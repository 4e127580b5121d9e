"""Prodigy and D-Adapt Adam against the official ``prodigyopt`` and ``dadaptation`` packages.

With the official defaults (lr = 1, no bias correction) the estimate d grows by orders of magnitude in
the first steps and the early steps are large, so float rounding (the group sums are reduced in another
order; 1e-7 relative in d) is amplified by the training itself: those runs are compared through the
trajectory of d and a short run, and the 50-step parameter parity uses lr = 0.1 or the bias correction.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from gradkit.optim import DAdaptAdam, Prodigy

from _frontier_support import cnn_parity, smooth_cnn
from support import check_rejects, check_state_bytes, digits_batch

TOL = 1e-5


def _prodigy():
    return pytest.importorskip("prodigyopt", reason="parity needs the official Prodigy package: pip install prodigyopt")


def _dadapt():
    return pytest.importorskip("dadaptation", reason="parity needs the official package: pip install dadaptation")


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(use_bias_correction=True),
                                dict(weight_decay=0.01, use_bias_correction=True, safeguard_warmup=True),
                                dict(lr=0.1, weight_decay=0.01, decouple=False, betas=(0.0, 0.99)),
                                dict(lr=0.1, d_coef=0.5, growth_rate=1.05, beta3=0.9)])
def test_prodigy_matches_official(kw):
    official = _prodigy()
    assert cnn_parity(lambda p: Prodigy(p, **kw), lambda p: official.Prodigy(p, **kw)) <= TOL


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(use_bias_correction=True),
                                dict(weight_decay=0.01, decouple=True, use_bias_correction=True),
                                dict(lr=0.1, weight_decay=0.01, growth_rate=1.02)])
def test_dadapt_adam_matches_official(kw):
    official = _dadapt()
    assert cnn_parity(lambda p: DAdaptAdam(p, **kw), lambda p: official.DAdaptAdam(p, **kw)) <= TOL


def _estimates(ours_cls, official_cls, steps, key):
    x, y = digits_batch(512, image=True)
    a = smooth_cnn()
    b = copy.deepcopy(a)
    oa, ob = ours_cls(a.parameters()), official_cls(b.parameters())
    pairs = []
    for step in range(steps):
        xb, yb = x[(step * 64) % 512:][:64], y[(step * 64) % 512:][:64]
        for model, opt in ((a, oa), (b, ob)):
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        pairs.append((oa.group_states[0][key]["d"], ob.param_groups[0]["d"]))
    return pairs


@pytest.mark.parametrize("which", ["prodigy", "dadapt"])
def test_default_estimate_follows_official(which):
    official = _prodigy().Prodigy if which == "prodigy" else _dadapt().DAdaptAdam
    ours = Prodigy if which == "prodigy" else DAdaptAdam
    pairs = _estimates(ours, official, 15, which)
    assert pairs[-1][0] > 100 * pairs[0][0]  # d has grown by orders of magnitude
    assert max(abs(a - b) / b for a, b in pairs) <= TOL
    assert cnn_parity(lambda p: ours(p), lambda p: official(p), steps=10) <= TOL


def test_zero_gradients_move_nothing():
    for make in (Prodigy, DAdaptAdam):
        w = torch.nn.Parameter(torch.ones(3))
        opt = make([w])
        w.grad = torch.zeros(3)
        opt.step()
        assert torch.equal(w.detach(), torch.ones(3))


def test_estimate_is_saved_in_the_state_dict():
    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = Prodigy([w])
    for _ in range(3):
        w.grad = w.detach().clone()  # 0.5 ||w||^2: the distance travelled grows the estimate
        opt.step()
    saved = copy.deepcopy(opt.state_dict())
    assert saved["gradkit"]["group_states"][0]["prodigy"]["d"] == opt.group_states[0]["prodigy"]["d"] > 1e-6
    other = Prodigy([torch.nn.Parameter(w.detach().clone())])
    other.load_state_dict(saved)
    assert other.group_states[0]["prodigy"] == opt.group_states[0]["prodigy"]


def test_state_bytes():
    check_state_bytes(lambda p: Prodigy(p), tensors_per_param=4)  # s, x0, m, v
    check_state_bytes(lambda p: Prodigy(p, betas=(0.0, 0.999)), tensors_per_param=3)
    check_state_bytes(lambda p: DAdaptAdam(p), tensors_per_param=3)


@pytest.mark.parametrize("make, bad", [
    (Prodigy, dict(d0=0.0)), (Prodigy, dict(growth_rate=0.5)), (Prodigy, dict(beta3=1.0)),
    (Prodigy, dict(safeguard_warmup=1)), (DAdaptAdam, dict(d0=-1.0)), (DAdaptAdam, dict(decouple="no")),
])
def test_bad_arguments(make, bad):
    check_rejects(make, **bad)
