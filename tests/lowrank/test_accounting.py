"""Exact optimizer-state accounting: ``state_bytes(by=...)`` against ``gradkit.memory.estimate``."""
from __future__ import annotations

import pytest
import torch

import gradkit
import gradkit.lowrank
import gradkit.memory
from gradkit.models import TinyLM
from gradkit.registry import get_optimizer

from lowrank_helpers import Small, train

SPECS = [
    ("adamw", {}),
    ("frugal", {}),
    ("frugal", dict(projector="random", density=0.5)),
    ("frugal", dict(projector="random_seeded", density=0.5, state_dtype=("int8", 256, 0))),
    ("frugal", dict(projector="randk")),
    ("frugal", dict(projector="block")),
    ("frugal", dict(projector="dct", inner="sgd")),
    ("galore", dict(rank=4)),
    ("fira", dict(rank=4)),
    ("svdfree", dict(rank=4)),
    ("subset_norm", {}),
    ("snsm", dict(rank=4)),
]


def _lm():
    torch.manual_seed(0)
    return TinyLM(dim=16, depth=1, heads=2, context=8)


def _step(model, opt, steps=1):
    for s in range(steps):
        x = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(s))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.roll(-1, 1).flatten()).backward()
        opt.step()


@pytest.mark.parametrize("name, kwargs", SPECS, ids=[f"{n}{sorted(k.items())}" for n, k in SPECS])
@pytest.mark.parametrize("by", [None, "param", "key", "kind"])
def test_estimate_is_exact_after_the_first_step(name, kwargs, by):
    model = _lm()
    predicted = gradkit.memory.estimate(model, name, by=by, **kwargs)
    opt = get_optimizer(name)(model.named_parameters(), **kwargs)
    assert opt.state_bytes(by=by) == 0 or by is not None
    _step(model, opt)
    assert predicted == opt.state_bytes(by=by)
    if kwargs.get("projector") != "block":  # fixed subspace sizes: the state does not grow later
        _step(model, opt, 3)
        assert predicted == opt.state_bytes(by=by)


def test_estimate_takes_every_spec_form():
    model = _lm()
    expected = gradkit.memory.estimate(model, "frugal", density=0.5)
    assert gradkit.memory.estimate(model, ("frugal", {"density": 0.5})) == expected
    assert gradkit.memory.estimate(model, {"name": "frugal", "density": 0.5}) == expected
    factory = lambda params: gradkit.lowrank.FRUGAL(params, density=0.5)  # noqa: E731
    assert gradkit.memory.estimate(model, factory) == expected
    with pytest.raises(ValueError, match="by must be"):
        gradkit.memory.estimate(model, "frugal", by="layer")
    with pytest.raises(TypeError, match="optimizer spec"):
        gradkit.memory.estimate(model, 3)
    with pytest.raises(KeyError, match="unknown optimizer"):
        gradkit.memory.estimate(model, "frugall")


def test_estimate_allocates_nothing():
    model = _lm()
    before = [p.detach().clone() for p in model.parameters()]
    gradkit.memory.estimate(model, "galore", rank=4)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())


def test_kinds_separate_moments_projections_and_indices():
    model = Small()
    opt = gradkit.lowrank.FRUGAL(model.named_parameters(), density=0.5, projector="svd")
    train(model, opt, 1)
    kinds = opt.state_bytes(by="kind")
    up, down, conv = model.up.weight, model.down.weight, model.conv.weight
    # projection matrices: up 12x8 -> Q 4x8; down 6x12 -> P 6x3; conv 6x(6*2) -> P 6x3 (all float32)
    assert kinds["projection"] == 4 * (4 * 8 + 6 * 3 + 6 * 3)
    assert kinds.get("rng", 0) == 0  # the per-parameter seeds are plain ints
    assert isinstance(opt.state[up]["lowrank.seed"], int)
    full = sum(p.numel() for p in model.parameters() if all(p is not q for q in (up, down, conv)))
    low = 12 * 4 + 3 * 12 + 3 * 12
    assert kinds["moment"] == 2 * 4 * (full + low)
    idx = gradkit.lowrank.FRUGAL(model.named_parameters(), density=0.5, projector="randk")
    train(model, idx, 1)
    assert idx.state_bytes(by="kind")["index"] == 8 * (48 + 36 + 36)
    per_param = opt.state_bytes(by="param")
    assert sum(per_param.values()) == opt.state_bytes()


def test_frugal_at_quarter_density_keeps_about_a_quarter_of_adams_moments():
    model = TinyLM(dim=64, depth=2, heads=4, context=16)
    matrices = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n and "head" not in n]
    adam = gradkit.memory.estimate(model, "adamw", by="kind")["moment"]
    frugal = gradkit.memory.estimate(model, "frugal", density=0.25, by="kind")["moment"]
    saved = 2 * 4 * sum(p.numel() for p in matrices) * 0.75
    assert frugal == pytest.approx(adam - saved, rel=0.02)
