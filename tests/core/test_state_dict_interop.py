"""state_dicts beyond gradkit's own round trip: torch.optim's hooks, torch.optim state_dicts, and the
form torch.distributed.checkpoint and ZeroRedundancyOptimizer hand back (``state`` and ``param_groups``
only, params named)."""
import copy

import pytest
import torch

import gradkit
from gradkit.registry import get_optimizer, list_entries

from support import max_relative_difference, tiny_mlp, train

NAMES = [e.name for e in list_entries("optimizer")]


# -- hooks ------------------------------------------------------------------------------------------------
def test_state_dict_and_load_state_dict_hooks_fire_as_in_torch_optim():
    model = tiny_mlp()
    opt = gradkit.optim.AdamW(model.parameters())
    train(model, opt, 2)
    calls = []
    opt.register_state_dict_pre_hook(lambda o: calls.append("save-pre"))

    def save_post(o, sd):
        calls.append(("save-post", "gradkit" in sd))
        sd["extra"] = 1
        return sd

    opt.register_state_dict_post_hook(save_post)
    sd = opt.state_dict()
    assert sd["extra"] == 1

    def load_pre(o, sd):
        calls.append(("load-pre", sd.pop("extra")))
        sd = dict(sd)
        sd["param_groups"] = [dict(g, lr=0.5) for g in sd["param_groups"]]
        return sd  # a pre-hook may hand back a replacement dict

    opt.register_load_state_dict_pre_hook(load_pre)
    opt.register_load_state_dict_post_hook(lambda o: calls.append(("load-post", o.param_groups[0]["lr"])))
    opt.load_state_dict(sd)
    assert calls == ["save-pre", ("save-post", True), ("load-pre", 1), ("load-post", 0.5)]
    assert "extra" in sd  # the caller's dict is copied before pre-hooks edit it, as torch.optim does


def test_a_refused_state_dict_runs_no_post_hook():
    model = tiny_mlp()
    opt = gradkit.optim.AdamW(model.parameters())
    train(model, opt, 2)
    fired = []
    opt.register_load_state_dict_post_hook(lambda o: fired.append(o))
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.load_state_dict(sd)
    assert fired == []


# -- torch.optim state_dicts ----------------------------------------------------------------------------
TORCH_TWINS = [
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("SGD", {"lr": 0.1}),
]


@pytest.mark.parametrize("name, kwargs", TORCH_TWINS)
def test_a_torch_optim_state_dict_continues_in_gradkit_as_in_torch(name, kwargs):
    a = tiny_mlp()
    torch_a = getattr(torch.optim, name)(a.parameters(), **kwargs)
    train(a, torch_a, 5)
    b = copy.deepcopy(a)
    torch_b = getattr(torch.optim, name)(b.parameters(), **kwargs)
    torch_b.load_state_dict(torch_a.state_dict())
    ours = getattr(gradkit.optim, name)(a.parameters(), **kwargs)
    ours.load_state_dict(torch_a.state_dict())
    assert all(s["step"] == 5 for s in ours.state.values()) or name == "SGD"
    train(a, ours, 10, start=5)
    train(b, torch_b, 10, start=5)
    assert max_relative_difference(a, b) <= 1e-6


def test_a_torch_state_dict_is_checked_all_or_nothing():
    model = tiny_mlp()
    reference = torch.optim.Adam(model.parameters(), lr=1e-2)
    train(model, reference, 2)
    ours = gradkit.optim.Adam(model.parameters(), lr=1e-3)
    before = copy.deepcopy(ours.state_dict())
    sd = copy.deepcopy(reference.state_dict())
    sd["state"][1]["exp_avg"] = torch.zeros(5)
    with pytest.raises(ValueError, match=r"state\[1\]\['adam.exp_avg'\].*shape"):
        ours.load_state_dict(sd)
    sd = copy.deepcopy(reference.state_dict())
    sd["state"][0]["momentum_buffer"] = torch.zeros(16, 8)
    with pytest.raises(ValueError, match="momentum_buffer.*not a state key of torch.optim.Adam"):
        ours.load_state_dict(sd)
    sd = copy.deepcopy(reference.state_dict())
    sd["state"][0]["step"] = torch.tensor(2.5)
    with pytest.raises(TypeError, match=r"state\[0\]\['step'\]"):
        ours.load_state_dict(sd)
    assert ours.param_groups[0]["lr"] == 1e-3 and ours.state_dict()["state"] == before["state"] == {}


def test_a_torch_state_dict_from_before_decoupled_weight_decay_loads():
    model = tiny_mlp()
    reference = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train(model, reference, 2)
    sd = copy.deepcopy(reference.state_dict())
    for group in sd["param_groups"]:
        del group["decoupled_weight_decay"]
    ours = gradkit.optim.AdamW(model.parameters())
    ours.load_state_dict(sd)
    assert ours.param_groups[0]["decoupled_weight_decay"] is True and ours.param_groups[0]["lr"] == 1e-2


def test_torch_state_dicts_load_only_into_the_same_method():
    model = tiny_mlp()
    reference = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, reference, 2)
    with pytest.raises(ValueError, match="momentum_buffer.*not a state key of torch.optim.AdamW"):
        gradkit.optim.AdamW(model.parameters()).load_state_dict(reference.state_dict())
    with pytest.raises(ValueError, match="no 'gradkit' entry"):
        gradkit.optim.Lion(model.parameters()).load_state_dict(reference.state_dict())


# -- the state_dict DCP and ZeroRedundancyOptimizer rebuild -------------------------------------------------
def _rebuilt(sd: dict, names: list[str]) -> dict:
    """What DCP's get_optimizer_state_dict keeps: state and param_groups, params by name."""
    ids = [pid for g in sd["param_groups"] for pid in g["params"]]
    by_id = dict(zip(ids, names))
    return {"state": {by_id[pid]: entry for pid, entry in sd["state"].items()},
            "param_groups": [dict(g, params=[by_id[pid] for pid in g["params"]]) for g in sd["param_groups"]]}


@pytest.mark.parametrize("name", NAMES)
def test_state_and_param_groups_alone_carry_every_optimizers_full_state(name):
    a = tiny_mlp()
    opt_a = get_optimizer(name)(a.named_parameters())
    train(a, opt_a, 4)
    opt_a.skipped_steps = 3
    b = copy.deepcopy(a)
    opt_b = get_optimizer(name)(b.named_parameters())
    sd = copy.deepcopy(opt_a.state_dict())
    opt_b.load_state_dict(_rebuilt(sd, [n for n, _ in a.named_parameters()]))
    assert opt_b.skipped_steps == 3
    assert str(opt_b.group_states) == str(opt_a.group_states)
    train(a, opt_a, 4, start=4)
    train(b, opt_b, 4, start=4)
    assert max_relative_difference(a, b) == 0.0


def test_group_shares_that_disagree_are_refused():
    model = tiny_mlp()
    opt = gradkit.optim.AdamW([{"params": [model[0].weight]}, {"params": [model[0].bias]}])
    sd = _rebuilt(opt.state_dict(), ["w", "b"])
    sd["param_groups"][1]["gradkit"]["skipped_steps"] = 7
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['gradkit'\]\['skipped_steps'\]"):
        opt.load_state_dict(sd)
    sd = _rebuilt(opt.state_dict(), ["w", "b"])
    sd["param_groups"][0]["params"] = ["w", 1]
    with pytest.raises(TypeError, match="param ids"):
        opt.load_state_dict(sd)
