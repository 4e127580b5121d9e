"""Property-based checks over every registered optimizer (hypothesis).

- corrupted state_dicts: each is refused with ValueError/TypeError and changes nothing, or is loaded as
  given (floating state cast to the compute dtype) and training continues;
- bad hyperparameters (text, bools, nan, wrong containers) at construction, in an added group, or set on
  a group between steps: a ValueError/TypeError naming the argument, nothing changed;
- non-finite gradients at random places: ``raise`` and ``skip`` leave everything as it was, and a run
  with skipped steps equals the run that never saw them;
- an exception injected inside any transform of the chain, after it ran: with ``transactional=True``
  the optimizer and params are exactly as before and the next step equals a run that never failed;
  without, params and step counters are unchanged and the exception says the state may be partly updated.

Bounded for the default suite (derandomized, so a run is repeatable). A longer, randomized run::

    GRADKIT_FUZZ_EXAMPLES=2000 python -m pytest -q tests/core/test_fuzz.py -p no:cacheprovider
"""
from __future__ import annotations

import copy
import inspect
import math
import os

import pytest
import torch

pytest.importorskip("hypothesis", reason="the fuzz suite needs hypothesis (pip install gradkit[test])")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gradkit.core.transform import GradientTransform  # noqa: E402
from gradkit.registry import get_optimizer  # noqa: E402

from .helpers import tiny_mlp  # noqa: E402
from .reliability import NAMES, same, set_grads, snapshot  # noqa: E402

LONG_RUN = os.environ.get("GRADKIT_FUZZ_EXAMPLES")


def fuzz_settings(default_examples: int):
    return settings(max_examples=int(LONG_RUN) if LONG_RUN else default_examples, deadline=None, database=None,
                    derandomize=not LONG_RUN, suppress_health_check=list(HealthCheck), print_blob=True)


# small ranks, so that the low-rank optimizers keep projections (the tiny MLP's matrices are 16 x 8)
SMALL = {name: {"rank": 2} for name in ("galore", "fira", "dct", "svdfree", "snsm")}


def build(name: str, model, transactional: bool = False, **kwargs):
    opt = get_optimizer(name)(model.named_parameters(), **{**SMALL.get(name, {}), **kwargs})
    opt.transactional = transactional
    return opt


_CLEAN: dict = {}


def trained(name: str, steps: int = 3, **kwargs):
    """A model and optimizer after ``steps`` steps (built once, then copied through a state_dict load)."""
    key = (name, steps, tuple(sorted(kwargs.items())))
    if key not in _CLEAN:
        model = tiny_mlp()
        opt = build(name, model, **kwargs)
        for i in range(steps):
            set_grads(model, seed=i + 1)
            opt.step()
        _CLEAN[key] = (model, copy.deepcopy(opt.state_dict()))
    model0, sd = _CLEAN[key]
    model = copy.deepcopy(model0)
    opt = build(name, model, **kwargs)
    opt.load_state_dict(copy.deepcopy(sd))
    return model, opt, sd


# -- corrupted state_dicts ------------------------------------------------------------------------------
POOL = [None, "x", "1", -1, 0, 3, True, 1.5, float("nan"), [], {}, (), torch.zeros(2), torch.tensor(1.0),
        torch.tensor(3), [torch.zeros(1)]]
DTYPES = [torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.bool, torch.complex64]


def _paths(node, prefix=()):
    """Every entry of the state_dict tree (dict values and list items; not inside tensors)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for key, value in items:
        yield prefix + (key,)
        yield from _paths(value, prefix + (key,))


def _get(root, path):
    for key in path:
        root = root[key]
    return root


def _set(root, path, value):
    parent = _get(root, path[:-1])
    if isinstance(parent, tuple):  # tuples (betas) are rebuilt
        items = list(parent)
        items[path[-1]] = value
        _set(root, path[:-1], tuple(items))
    else:
        parent[path[-1]] = value


def _delete(root, path):
    parent = _get(root, path[:-1])
    if isinstance(parent, tuple):
        _set(root, path[:-1], tuple(v for i, v in enumerate(parent) if i != path[-1]))
    else:
        del parent[path[-1]]


@st.composite
def corruption(draw, sd):
    """A state_dict with 1-3 random corruptions, and their description."""
    sd = copy.deepcopy(sd)
    done = []
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(sd))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        value = _get(sd, path)
        kinds = ["delete", "replace", "insert"] + (["dtype", "shape", "nonfinite"] if torch.is_tensor(value) else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "delete":
            _delete(sd, path)
        elif kind == "replace":
            _set(sd, path, copy.deepcopy(draw(st.sampled_from(POOL))))
        elif kind == "insert":
            target = value if isinstance(value, dict) else _get(sd, path[:-1])
            if isinstance(target, dict):
                target[draw(st.sampled_from(["extra", 12345, "adam.exp_avg", "step"]))] = copy.deepcopy(
                    draw(st.sampled_from(POOL)))
        elif kind == "dtype":
            _set(sd, path, value.to(draw(st.sampled_from(DTYPES))))
        elif kind == "shape":
            _set(sd, path, draw(st.sampled_from([value.reshape(-1)[:1], value.unsqueeze(0), value.reshape(-1)])))
        elif kind == "nonfinite" and value.is_floating_point() and value.numel():
            corrupted = value.clone()
            corrupted.view(-1)[draw(st.integers(0, value.numel() - 1))] = draw(st.sampled_from([math.nan, math.inf]))
            _set(sd, path, corrupted)
        done.append((kind, path))
    return sd, done


def _meta_from_groups(groups):
    from gradkit.core.state_dict import _meta_from_groups as rebuilt

    return rebuilt(groups)


def _loaded_as_given(opt, given) -> bool:
    """The optimizer holds exactly what ``given`` says (floating state cast to the compute dtype)."""
    not_hyper = ("params", "param_names", "gradkit")  # a saved group's "gradkit" entry is that group's gradkit state
    for group, saved in zip(opt.param_groups, given["param_groups"]):
        if {k for k in group if k not in not_hyper} != {k for k in saved if k not in not_hyper}:
            return False
        if not all(same(snapshot_value(group[k]), snapshot_value(saved[k])) for k in saved if k not in not_hyper):
            return False
        for p, pid in zip(group["params"], saved["params"]):
            have, want = opt.state.get(p, {}), given["state"].get(pid, {})
            if have.keys() != want.keys():
                return False
            for k, v in want.items():
                w = have[k]
                if torch.is_tensor(v):
                    if not (torch.is_tensor(w) and torch.equal(v.to(w.dtype), w)):
                        return False
                elif not same(snapshot_value(v), snapshot_value(w)):
                    return False
    # without the top-level entry, the gradkit state is the one the param groups carry
    meta = given["gradkit"] if "gradkit" in given else _meta_from_groups(given["param_groups"])
    return (same(snapshot_value(opt.group_states), snapshot_value(meta["group_states"]))
            and opt.skipped_steps == meta["skipped_steps"])


def snapshot_value(v):
    from .reliability import _copy

    return _copy(v)


@fuzz_settings(200)
@given(data=st.data())
def test_a_corrupted_state_dict_is_refused_untouched_or_loaded_as_given(data):
    name = data.draw(st.sampled_from(NAMES), label="optimizer")
    model, opt, sd = trained(name)
    bad, done = data.draw(corruption(sd), label="corruption")
    before = snapshot(opt, model)
    try:
        opt.load_state_dict(bad)
    except (ValueError, TypeError):
        assert same(snapshot(opt, model), before), f"{name}: a refused load changed the optimizer ({done})"
        return
    assert _loaded_as_given(opt, bad), f"{name}: loaded something other than what was given ({done})"
    for i in range(2):  # an accepted state_dict must step (a non-finite verdict is the policy at work)
        set_grads(model, seed=10 + i)
        try:
            opt.step()
        except FloatingPointError:
            pass


# -- bad hyperparameters --------------------------------------------------------------------------------
BAD_NUMBERS = ["0.1", "1", "abc", True, False, float("nan"), 1 + 0j, [0.1], None]


def _numeric_arguments(name):
    sig = inspect.signature(get_optimizer(name).__init__)
    out = {}
    for arg, p in sig.parameters.items():
        d = p.default
        if isinstance(d, (int, float)) and not isinstance(d, bool):
            out[arg] = d
        elif isinstance(d, tuple) and d and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in d):
            out[arg] = d
    return out


@st.composite
def bad_argument(draw, name):
    args = _numeric_arguments(name)
    arg = draw(st.sampled_from(sorted(args)))
    default = args[arg]
    if isinstance(default, tuple):
        bad = draw(st.sampled_from([
            tuple(str(x) for x in default), (True,) + default[1:], default[:-1] + (float("nan"),),
            default[:-1] + ("0.5",), default[0], (None,) * len(default)]))
    else:
        bad = draw(st.sampled_from(BAD_NUMBERS))
    return arg, bad


# Muon's adamw_* settings become its AdamW groups' lr/betas/eps/weight_decay
GROUP_KEY = {"adamw_lr": "lr", "adamw_betas": "betas", "adamw_eps": "eps", "adamw_weight_decay": "weight_decay"}


@fuzz_settings(200)
@given(data=st.data())
def test_a_bad_hyperparameter_is_refused_by_name_and_changes_nothing(data):
    name = data.draw(st.sampled_from(NAMES), label="optimizer")
    arg, bad = data.draw(bad_argument(name), label="argument")
    where = data.draw(st.sampled_from(["constructor", "group between steps"]), label="where")
    if where == "constructor":
        with pytest.raises((ValueError, TypeError)) as info:
            build(name, tiny_mlp(), **{arg: bad})
        assert arg in str(info.value), f"{name}({arg}={bad!r}): {info.value}"
        return
    model, opt, _ = trained(name)
    key = GROUP_KEY.get(arg, arg)
    groups = [g for g in opt.param_groups if key in g]
    if name == "muon":  # each key is read by one kind of Muon group only
        groups = [g for g in groups if g["use_muon"] == (arg not in GROUP_KEY)]
    if not groups:
        return  # not a group hyperparameter (e.g. rank)
    groups[0][key] = bad
    set_grads(model, seed=7)
    before = snapshot(opt, model)
    with pytest.raises((ValueError, TypeError)) as info:
        opt.step()
    assert key in str(info.value), f"{name} group[{key!r}]={bad!r}: {info.value}"
    assert same(snapshot(opt, model), before)


# -- non-finite gradients ---------------------------------------------------------------------------------
@fuzz_settings(120)
@given(data=st.data())
def test_nonfinite_gradients_never_change_anything_under_raise_and_skip(data):
    name = data.draw(st.sampled_from(NAMES), label="optimizer")
    policy = data.draw(st.sampled_from(["raise", "skip"]), label="policy")
    poisoned = data.draw(st.lists(st.booleans(), min_size=4, max_size=4), label="poisoned steps")
    model, opt, _ = trained(name, nonfinite=policy)
    twin, twin_opt, _ = trained(name, nonfinite=policy)  # sees only the clean steps
    for i, poison in enumerate(poisoned):
        set_grads(model, seed=20 + i)
        if not poison:
            set_grads(twin, seed=20 + i)
            twin_opt.step()
            opt.step()
            continue
        grads = [p.grad for p in model.parameters()]
        for _ in range(data.draw(st.integers(1, 3), label="bad values")):
            g = grads[data.draw(st.integers(0, len(grads) - 1))]
            g.view(-1)[data.draw(st.integers(0, g.numel() - 1))] = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        before = snapshot(opt, model)
        if policy == "raise":
            with pytest.raises(FloatingPointError):
                opt.step()
        else:
            opt.step()
            before["skipped_steps"] += 1
        assert same(snapshot(opt, model), before)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


# -- failures inside the chain ------------------------------------------------------------------------------
class Injected(RuntimeError):
    pass


def _transforms(t, seen=None):
    """``t`` and every transform nested in it (sub-chains, wrapped and inner transforms)."""
    seen = set() if seen is None else seen
    if id(t) in seen:
        return []
    seen.add(id(t))
    out = [t]
    for value in vars(t).values():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, GradientTransform):
                out.extend(_transforms(item, seen))
    return out


def _fail_after(t):
    original = t.update

    def update(*args, **kwargs):
        original(*args, **kwargs)  # the transform has written its state: then the step fails
        raise Injected("injected failure")

    t.update = update
    return original


@fuzz_settings(120)
@given(data=st.data())
def test_a_failure_inside_the_chain_leaves_the_guaranteed_things_unchanged(data):
    name = data.draw(st.sampled_from(NAMES), label="optimizer")
    transactional = data.draw(st.booleans(), label="transactional")
    model, opt, _ = trained(name, transactional=transactional)
    twin, twin_opt, _ = trained(name, transactional=transactional)
    transforms = _transforms(opt.transform)[1:]
    victim = transforms[data.draw(st.integers(0, len(transforms) - 1), label="failing transform")]
    set_grads(model, seed=30)
    before = snapshot(opt, model)
    original = _fail_after(victim)
    try:
        opt.step()
    except Injected as error:
        failed = error
    else:
        failed = None  # the transform did not run this step (e.g. the other branch of a group selector)
    finally:
        victim.update = original
    if failed is None:
        return
    after = snapshot(opt, model)
    if transactional:
        assert same(after, before), f"{name}: a failed transactional step changed something"
        set_grads(model, seed=31)
        opt.step()
        set_grads(twin, seed=31)
        twin_opt.step()
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))
    else:
        assert same(after["params"], before["params"]), f"{name}: a failed step wrote params"
        steps = lambda snap: {k: s.get("step") for k, s in snap["state"].items()}  # noqa: E731
        assert steps(after) == steps(before), f"{name}: a failed step advanced step counters"
        assert any("transactional=True" in note for note in getattr(failed, "__notes__", []))
