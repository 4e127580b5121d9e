"""Group-level state reachable from the live param groups, and state_dicts whose layout does not move.

``ZeroRedundancyOptimizer`` copies param-group keys between itself and its local optimizer (and so into
and out of its state_dict): each live group carries its group-level state as ``group["gradkit"]``, and a
step takes over one put there from outside, checked. FRUGAL's block state (a list per param) is saved in
a form whose keys and shapes are the same at every step, as ``torch.distributed.checkpoint`` needs to load
into a template from a fresh optimizer (tests/distributed/test_dist_checkpoint.py runs both end to end).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gradkit.registry import get_optimizer

pytestmark = pytest.mark.filterwarnings("ignore::gradkit.grouping.RoutingWarning")


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _train(model, opt, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        model(torch.randn(5, 6, generator=g)).pow(2).mean().backward()
        opt.step()


def test_each_live_group_carries_its_group_state():
    model = _model()
    opt = get_optimizer("prodigy")(model.parameters())
    _train(model, opt, 2)
    assert all(g["gradkit"] is s for g, s in zip(opt.param_groups, opt.group_states))
    assert opt.group_states[0]  # Prodigy keeps its estimate there
    twin = copy.deepcopy(opt)
    assert all(g["gradkit"] is s for g, s in zip(twin.param_groups, twin.group_states))
    # another optimizer built from these groups starts with its own, empty group state
    other = get_optimizer("prodigy")(opt.param_groups)
    assert other.group_states[0] == {} and other.param_groups[0]["gradkit"] is other.group_states[0]


def test_a_group_state_put_into_the_group_is_taken_over_on_the_next_step():
    a, b = _model(), _model()
    opt_a = get_optimizer("schedule_free_adamw")(a.parameters(), lr=1e-2)
    opt_b = get_optimizer("schedule_free_adamw")(b.parameters(), lr=1e-2)
    _train(a, opt_a, 3)
    b.load_state_dict(a.state_dict())
    sd = copy.deepcopy(opt_a.state_dict())  # state_dict shares the live state, as torch.optim's does
    for p, q in zip(b.parameters(), a.parameters()):
        opt_b.state[p] = copy.deepcopy(opt_a.state[q])
    given = copy.deepcopy(opt_a.group_states[0])
    kept = copy.deepcopy(given)
    opt_b.param_groups[0]["gradkit"] = given  # what ZeroRedundancyOptimizer's load_state_dict does
    _train(a, opt_a, 3, seed=2)
    _train(b, opt_b, 3, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert given == kept  # taken over as a copy: the dict handed in does not change
    assert opt_b.param_groups[0]["gradkit"] is opt_b.group_states[0]
    assert sd["param_groups"][0]["gradkit"]["group_state"] == kept  # the saved share is the same state


def test_a_bad_group_state_in_the_group_is_refused_and_nothing_changes():
    model = _model()
    opt = get_optimizer("schedule_free_adamw")(model.parameters(), lr=1e-2)
    _train(model, opt, 2)
    before = [p.detach().clone() for p in model.parameters()]
    own = copy.deepcopy(opt.group_states)
    opt.param_groups[0]["gradkit"] = {"no_such_transform": {}}
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['gradkit'\]\['no_such_transform'\]"):
        _train(model, opt, 1)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert opt.group_states == own


def test_frugal_block_state_dicts_keep_their_keys_and_shapes_as_the_block_moves():
    model = _model()
    opt = get_optimizer("frugal")(model.named_parameters(), lr=1e-2, density=0.5, update_freq=2, projector="block")

    def layout():
        return {pid: {k: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v) for k, v in entry.items()}
                for pid, entry in opt.state_dict()["state"].items()}

    _train(model, opt, 1)
    first = layout()
    held = [{k: v for k, v in e.items() if k.startswith("gradkit.held.")} for e in opt.state_dict()["state"].values()]
    _train(model, opt, 2)
    assert layout() == first
    moved = [{k: v for k, v in e.items() if k.startswith("gradkit.held.")} for e in opt.state_dict()["state"].values()]
    assert held != moved  # the active block did move
    # the live state keeps its lists; a load turns the saved form back into them
    assert any(isinstance(v, list) for s in opt.state.values() for v in s.values())
    twin = get_optimizer("frugal")(_model().named_parameters(), lr=1e-2, density=0.5, update_freq=2, projector="block")
    twin.load_state_dict(opt.state_dict())
    for p, q in zip(twin.param_groups[0]["params"], opt.param_groups[0]["params"]):
        for key, value in opt.state[q].items():
            if isinstance(value, list):
                assert len(twin.state[p][key]) == len(value) and all(torch.equal(x, y) for x, y in zip(twin.state[p][key], value))
