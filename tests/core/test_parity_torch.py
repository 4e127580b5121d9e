"""gradkit's Adam, AdamW and SGD against torch.optim (foreach) for every supported combination."""
import itertools

import pytest
import torch

import gradkit

from support import max_relative_difference, tiny_mlp, train

STEPS = 200
TOL = 1e-6


def _combos(**axes):
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*axes.values())]


ADAM = _combos(amsgrad=[False, True], maximize=[False, True], weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True])
ADAMW = _combos(amsgrad=[False, True], maximize=[False, True], weight_decay=[0.0, 0.1])
SGD = [c for c in _combos(momentum=[0.0, 0.9], dampening=[0.0, 0.5], nesterov=[False, True], weight_decay=[0.0, 0.01], maximize=[False, True])
       if not (c["nesterov"] and (c["momentum"] == 0 or c["dampening"] != 0))]


def _parity(ours, theirs, kw, **train_kw):
    a, b = tiny_mlp(), tiny_mlp()
    train(a, ours(a.parameters(), **kw), STEPS, **train_kw)
    train(b, theirs(b.parameters(), foreach=True, **kw), STEPS, **train_kw)
    return max_relative_difference(a, b)


@pytest.mark.parametrize("kw", ADAM, ids=str)
def test_adam_matches_torch(kw):
    assert _parity(gradkit.optim.Adam, torch.optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, **kw)) <= TOL


@pytest.mark.parametrize("kw", ADAMW, ids=str)
def test_adamw_matches_torch(kw):
    assert _parity(gradkit.optim.AdamW, torch.optim.AdamW, dict(lr=1e-2, **kw)) <= TOL


@pytest.mark.parametrize("kw", SGD, ids=str)
def test_sgd_matches_torch(kw):
    assert _parity(gradkit.optim.SGD, torch.optim.SGD, dict(lr=5e-2, **kw)) <= TOL


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD"])
def test_params_skipped_on_some_steps_match_torch(name):
    """Tensors that have taken different numbers of steps (per-tensor bias corrections)."""
    kw = dict(lr=1e-2) if name != "SGD" else dict(lr=5e-2, momentum=0.9)
    err = _parity(getattr(gradkit.optim, name), getattr(torch.optim, name), kw, freeze_every=3)
    assert err <= TOL


@pytest.mark.parametrize("name", ["AdamW", "SGD"])
def test_lr_scheduler_matches_torch(name):
    a, b = tiny_mlp(), tiny_mlp()
    oa = getattr(gradkit.optim, name)(a.parameters(), lr=0.05)
    ob = getattr(torch.optim, name)(b.parameters(), lr=0.05, foreach=True)
    train(a, oa, 60, scheduler=torch.optim.lr_scheduler.OneCycleLR(oa, max_lr=0.1, total_steps=60))
    train(b, ob, 60, scheduler=torch.optim.lr_scheduler.OneCycleLR(ob, max_lr=0.1, total_steps=60))
    assert oa.param_groups[0]["lr"] == ob.param_groups[0]["lr"]
    assert max_relative_difference(a, b) <= TOL


def test_param_groups_with_their_own_hyperparameters_match_torch():
    def groups(m):
        return [{"params": m[0].parameters(), "lr": 3e-2, "betas": (0.5, 0.9), "weight_decay": 0.2},
                {"params": m[2].parameters(), "amsgrad": True}]

    a, b = tiny_mlp(), tiny_mlp()
    train(a, gradkit.optim.AdamW(groups(a), lr=1e-2), STEPS)
    train(b, torch.optim.AdamW(groups(b), lr=1e-2, foreach=True), STEPS)
    assert max_relative_difference(a, b) <= TOL
