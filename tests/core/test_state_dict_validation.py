"""load_state_dict checks everything first: each bad entry is named, and a refused load changes nothing."""
import copy

import pytest
import torch

import gradkit

from .reliability import same, set_grads, snapshot, trained


def _refused(opt, model, sd, error, *words):
    before = snapshot(opt, model)
    with pytest.raises(error) as info:
        opt.load_state_dict(sd)
    message = str(info.value)
    assert all(w in message for w in words), message
    assert same(snapshot(opt, model), before), "a refused load changed the optimizer"


def _adamw():
    model, opt = trained("adamw", steps=5)
    return model, opt, copy.deepcopy(opt.state_dict())


@pytest.mark.parametrize("field, value, error", [
    ("skipped_steps", "x", TypeError), ("skipped_steps", -1, ValueError), ("skipped_steps", True, TypeError),
    ("skipped_steps", 1.0, TypeError), ("group_states", None, TypeError), ("group_states", [], ValueError),
    ("group_states", [None], TypeError), ("group_states", [{"nope": {}}], ValueError),
    ("group_states", [{"adam": 3}], TypeError), ("format", True, ValueError), ("format", 2, ValueError),
])
def test_a_bad_gradkit_entry_is_refused_before_groups_or_state_change(field, value, error):
    model, opt, sd = _adamw()
    # other parts of the state_dict are valid and different: none of them may be applied
    sd["param_groups"][0]["lr"] = 0.5
    for s in sd["state"].values():
        s["step"] = 1000
    sd["gradkit"][field] = value
    _refused(opt, model, sd, error, field)


def test_a_missing_gradkit_field_is_named():
    model, opt, sd = _adamw()
    del sd["gradkit"]["group_states"]
    _refused(opt, model, sd, ValueError, "group_states")


@pytest.mark.parametrize("corrupt, error, words", [
    (lambda s: s.pop("adam.exp_avg_sq"), ValueError, ["state[0]", "adam.exp_avg_sq"]),
    (lambda s: s.update({"adam.exp_avg": s["adam.exp_avg"].long()}), TypeError, ["state[0]['adam.exp_avg']", "int64"]),
    (lambda s: s.update({"adam.exp_avg": s["adam.exp_avg"].bool()}), TypeError, ["state[0]['adam.exp_avg']"]),
    (lambda s: s.update({"adam.exp_avg": s["adam.exp_avg"].to(torch.complex64)}), TypeError, ["state[0]['adam.exp_avg']"]),
    (lambda s: s.update({"adam.exp_avg": s["adam.exp_avg"].tolist()}), TypeError, ["state[0]['adam.exp_avg']", "list"]),
    (lambda s: s.update({"adam.exp_avg": s["adam.exp_avg"][:3]}), ValueError, ["state[0]['adam.exp_avg']", "shape"]),
    (lambda s: s.update({"adam.exp_avg": s["adam.exp_avg"].to_sparse()}), TypeError, ["state[0]['adam.exp_avg']"]),
    (lambda s: s.update({"adam.extra": torch.zeros(1)}), ValueError, ["state[0]['adam.extra']"]),
    (lambda s: s.pop("step"), ValueError, ["state[0]", "'step'"]),
    (lambda s: s.update({"step": -1}), ValueError, ["state[0]['step']"]),
    (lambda s: s.update({"step": True}), TypeError, ["state[0]['step']"]),
    (lambda s: s.update({"step": 5.0}), TypeError, ["state[0]['step']"]),
    (lambda s: s.update({"step": torch.tensor(5.0)}), TypeError, ["state[0]['step']"]),
    (lambda s: s["adam.exp_avg"].view(-1).__setitem__(0, float("nan")), ValueError, ["state[0]['adam.exp_avg']", "nan"]),
])
def test_a_bad_state_entry_is_named_and_nothing_changes(corrupt, error, words):
    model, opt, sd = _adamw()
    sd["param_groups"][0]["lr"] = 0.5
    corrupt(sd["state"][0])
    _refused(opt, model, sd, error, *words)


@pytest.mark.parametrize("key, value, error", [
    ("lr", "0.5", TypeError), ("lr", True, TypeError), ("lr", -1.0, ValueError), ("betas", ("0.9", "0.99"), TypeError),
    ("eps", None, TypeError), ("amsgrad", 1, ValueError), ("weight_decay", float("nan"), ValueError),
])
def test_group_hyperparameters_pass_the_construction_validators(key, value, error):
    model, opt, sd = _adamw()
    sd["param_groups"][0][key] = value
    _refused(opt, model, sd, error, "param_groups[0]", key)


def test_a_group_missing_a_hyperparameter_is_refused():
    model, opt, sd = _adamw()
    del sd["param_groups"][0]["eps"]
    _refused(opt, model, sd, ValueError, "param_groups[0]", "eps")


@pytest.mark.parametrize("corrupt, error", [
    (lambda sd: sd.update({"state": []}), TypeError),
    (lambda sd: sd.update({"param_groups": {}}), TypeError),
    (lambda sd: sd["param_groups"][0].update({"params": [0, 0, 1, 2]}), ValueError),
    (lambda sd: sd["param_groups"][0].update({"params": ["0", 1, 2, 3]}), TypeError),
    (lambda sd: sd["state"].update({99: {}}), ValueError),
    (lambda sd: sd["state"].update({0: None}), TypeError),
    (lambda sd: sd.pop("state"), ValueError),
])
def test_bad_structure_is_refused(corrupt, error):
    model, opt, sd = _adamw()
    corrupt(sd)
    _refused(opt, model, sd, error)


def test_not_a_dict_is_refused():
    model, opt, _ = _adamw()
    _refused(opt, model, [1, 2], TypeError, "dict")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_floating_state_of_another_dtype_is_cast_as_torch_does(dtype):
    model, opt, sd = _adamw()
    for s in sd["state"].values():
        for k, v in s.items():
            if torch.is_tensor(v):
                s[k] = v.to(dtype)
    opt.load_state_dict(sd)
    assert all(v.dtype == torch.float32 for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
    set_grads(model)
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_float64_round_trip_continues_bit_identically():
    model, opt, sd = _adamw()
    twin = copy.deepcopy(model)
    other = gradkit.optim.AdamW(twin.named_parameters())
    wide = copy.deepcopy(sd)
    for s in wide["state"].values():
        for k, v in s.items():
            if torch.is_tensor(v):
                s[k] = v.double()
    other.load_state_dict(wide)
    for m, o in ((model, opt), (twin, other)):
        for _ in range(3):
            set_grads(m)
            o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


def test_nonfinite_state_loads_under_the_ignore_policy():
    model, opt, sd = _adamw()
    sd["state"][0]["adam.exp_avg"].view(-1)[0] = float("inf")
    loose = gradkit.optim.AdamW(model.named_parameters(), nonfinite="ignore")
    loose.load_state_dict(sd)
    assert torch.isinf(loose.state[model[0].weight]["adam.exp_avg"]).any()


def test_an_empty_state_entry_means_not_stepped_yet():
    model, opt, sd = _adamw()
    sd["state"][0] = {}
    opt.load_state_dict(sd)
    assert model[0].weight not in opt.state
    set_grads(model)
    opt.step()
    assert opt.state[model[0].weight]["step"] == 1 and opt.state[model[0].bias]["step"] == 6


def test_lowrank_counters_ids_and_indices_are_checked():
    model, opt = trained("frugal", steps=3, projector="randk")
    sd = copy.deepcopy(opt.state_dict())
    pid = next(i for i, s in sd["state"].items() if "lowrank.proj.indices" in s)
    for key, value, error in [("lowrank.seed", -3, ValueError), ("lowrank.seed", "7", TypeError),
                              ("lowrank.inner_step", 2.5, TypeError),
                              ("lowrank.proj.indices", sd["state"][pid]["lowrank.proj.indices"] + 10**6, ValueError),
                              ("lowrank.proj.indices", sd["state"][pid]["lowrank.proj.indices"].int(), TypeError)]:
        bad = copy.deepcopy(sd)
        bad["state"][pid][key] = value
        _refused(opt, model, bad, error, f"state[{pid}]['{key}']")
    bad = copy.deepcopy(sd)
    bad["gradkit"]["group_states"][0]["lowrank"]["next_id"] = -1
    _refused(opt, model, bad, ValueError, "next_id")


def test_a_valid_state_dict_still_loads_into_every_group():
    model, opt = trained("muon", steps=2)
    other_model = copy.deepcopy(model)
    other = gradkit.optim.Muon(other_model.named_parameters())
    other.load_state_dict(opt.state_dict())
    for m, o in ((model, opt), (other_model, other)):
        set_grads(m)
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other_model.parameters()))


@pytest.mark.parametrize("value", ["x", 3, None, torch.zeros(2), [1]])
def test_group_state_keeps_the_types_the_optimizer_holds(value):
    model, opt = trained("sgdsai", steps=2)
    sd = copy.deepcopy(opt.state_dict())
    sd["gradkit"]["group_states"][0]["gsnr"]["max_gsnr"] = value
    _refused(opt, model, sd, TypeError, "['gradkit']['group_states'][0]['gsnr']['max_gsnr']")


@pytest.mark.parametrize("value", [torch.zeros(2), "yes", 1])
def test_a_malformed_flag_read_through_a_negation_is_refused(value):
    model, opt = trained("adabelief", steps=2)
    sd = copy.deepcopy(opt.state_dict())
    sd["param_groups"][0]["weight_decouple"] = value
    _refused(opt, model, sd, ValueError, "param_groups[0]", "weight_decouple")


@pytest.mark.parametrize("value, error", [("0.9", TypeError), (float("nan"), ValueError), (None, TypeError)])
def test_a_number_default_stays_a_number_where_the_chain_does_not_read_it(value, error):
    model, opt = trained("frugal", steps=2)  # inner AdamW: the group's momentum is not read
    sd = copy.deepcopy(opt.state_dict())
    sd["param_groups"][0]["momentum"] = value
    _refused(opt, model, sd, error, "param_groups[0]", "momentum")


def _started_group_states():
    """(optimizer, namespace, declared keys) for every registered optimizer's started group state whose
    transform declares its keys; the low-rank family's (nested inner states) declares none."""
    import warnings

    from gradkit.registry import get_optimizer, list_entries

    out = []
    for entry in list_entries("optimizer"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = get_optimizer(entry.name)(model.named_parameters())
        x = torch.randn(16, 8)
        for _ in range(3):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
        owners = dict(zip(opt.transform.namespaces, opt.transform.transforms))
        for index, state in enumerate(opt.group_states):
            for namespace, value in state.items():
                if value and owners[namespace].group_state_keys:
                    out.append((entry.name, opt, index, namespace, sorted(value)))
    return out


_STARTED = _started_group_states()


def test_declared_group_state_keys_are_the_keys_kept():
    names = {name for name, *_ in _STARTED}
    assert {"dadapt_adam", "dog", "prodigy", "psgd_kron", "schedule_free_adamw", "schedule_free_sgd", "sgdsai",
            "udog"} <= names, names
    for name, opt, index, namespace, kept in _STARTED:
        owner = dict(zip(opt.transform.namespaces, opt.transform.transforms))[namespace]
        assert sorted(owner.group_state_keys) == kept, (name, namespace, owner.group_state_keys, kept)


# (a group state of one key, SGD-SaI's max gSNR, is empty without it: a state not started yet, which loads)
@pytest.mark.parametrize("case", [c for c in _STARTED if len(c[4]) > 1], ids=lambda c: f"{c[0]}-{c[2]}-{c[3]}")
def test_a_started_group_state_missing_a_declared_key_is_refused(case):
    name, opt, index, namespace, kept = case
    sd = copy.deepcopy(opt.state_dict())
    del sd["gradkit"]["group_states"][index][namespace][kept[0]]
    before = copy.deepcopy(opt.group_states)
    with pytest.raises(ValueError, match=rf"\['{namespace}'\] has no '{kept[0]}'"):
        opt.load_state_dict(sd)
    assert str(opt.group_states) == str(before)
