"""Checking a state_dict completely before ``gradkit.Optimizer.load_state_dict`` changes anything.

:func:`check_state_dict` builds everything the optimizer will hold after the load (param groups, state,
group-level state, counters) without touching the optimizer, or raises one ``ValueError`` or
``TypeError`` whose message starts with the path of the first bad entry (``state[3]['adam.exp_avg']``,
``param_groups[0]['lr']``, ``gradkit['skipped_steps']``). What is checked:

- structure: a dict with ``state``, ``param_groups`` and the ``gradkit`` entry; the recipe and the chain's
  signature match; as many groups and params per group; param ids are unique (ints, or names under DCP);
- hyperparameters: each group keeps every key of the optimizer's defaults and passes the same validators
  as construction (types and ranges);
- per-parameter state, against what the chain's ``init`` builds for that param (run on the meta device,
  so it costs no memory): the same keys, a state with entries but no ``step`` (or a ``step`` without
  them) is refused; tensors where tensors are expected, of the expected shape; floating-point state of
  another floating dtype is cast to the param's compute dtype as torch.optim casts it, integer, bool and
  complex tensors where floating point is expected are refused; integer tensors (indices) keep their dtype
  and lie in ``[0, numel)`` of their param; counters and ids are ints >= 0; floating state is finite
  unless the optimizer was built with ``nonfinite="ignore"`` (the other policies never let a non-finite
  value into the state, so such a state was not saved under them);
- the ``gradkit`` entry: ``format`` 1, ``skipped_steps`` an int >= 0, ``group_states`` a list of one dict
  per group keyed by the chain's namespaces, holding only numbers, strings, tensors and containers of
  them, with the types ``init`` gives, or else the optimizer holds now, where there is one; a started
  (non-empty) group state of a transform that declares ``group_state_keys`` holds all of them.

Two other forms are accepted, and turned into the one above before any check:

- no top-level ``gradkit`` entry, but one in every param group (``param_groups[i]['gradkit']``, written
  by ``state_dict()`` as :func:`group_meta`): what ``torch.distributed.checkpoint`` and
  ``ZeroRedundancyOptimizer`` hand back, since they rebuild a state_dict from ``state`` and
  ``param_groups`` only. Param ids may then be names (DCP uses the params' qualified names); they are
  matched to params by position, as torch.optim matches them.
- a ``torch.optim.Adam``, ``AdamW`` or ``SGD`` state_dict loaded into gradkit's optimizer of the same
  name (:func:`from_torch_optim`).

A per-param list of state is saved as one tensor and ``gradkit.held.<key>`` (:func:`fixed_lists`), and
read back as the list; a list in list form (or dropped by DCP because it was empty) is read as well.
:func:`check_group_states` checks group-level state that reaches a live param group from outside
(``ZeroRedundancyOptimizer.load_state_dict`` puts it in ``param_groups[i]['gradkit']``).
"""
from __future__ import annotations

import copy
from typing import Any, NamedTuple

import torch
from torch import Tensor

from gradkit.core.context import StepContext
from gradkit.core.redistribute import owner_plan
from gradkit.core.sharding import is_sharded
from gradkit.core.state import as_kind
from gradkit.core.storage import convert_entry

__all__ = ["LoadedState", "check_state_dict", "check_group_states", "expected_state", "dtype_as_text", "fixed_lists",
           "from_torch_optim", "group_meta", "lists_from_fixed", "META_KEY", "FORMAT", "HELD"]

META_KEY = "gradkit"
FORMAT = 1
_META_FIELDS = ("format", "recipe", "transform", "group_states", "skipped_steps")
_GROUP_ONLY = ("params", "param_names", META_KEY)
_LEAVES = (int, float, bool, str, type(None), Tensor, torch.dtype)
HELD = "gradkit.held."  # + a list-valued state key: how many tensors that list holds (fixed_lists)


class LoadedState(NamedTuple):
    param_groups: list[dict]
    state: dict[Tensor, dict[str, Any]]
    group_states: list[dict]
    skipped_steps: int


def _fail(error: type[Exception], path: str, message: str):
    raise error(f"state_dict {path} {message}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def group_meta(meta: dict, group_state: dict) -> dict:
    """What a saved param group carries of the gradkit entry: everything but the other groups' state.

    ``group_dicts`` lists the path of every dict in the group state, because DCP's flattening keeps
    only leaves: an empty dict (a low-rank transform's ``inner`` state before it holds anything) would
    not come back, and the transform that reads it would fail."""
    return {"format": meta["format"], "recipe": meta["recipe"], "transform": meta["transform"],
            "group_state": group_state, "group_dicts": _dict_paths(group_state), "skipped_steps": meta["skipped_steps"]}


def _dict_paths(tree: dict, prefix: tuple = ()) -> list[list]:
    paths = []
    for key, value in tree.items():
        if isinstance(value, dict):
            paths.append([*prefix, key])
            paths.extend(_dict_paths(value, (*prefix, key)))
    return paths


def _with_dicts(path: str, tree: Any, paths: Any) -> Any:
    """``tree`` (copied) with an empty dict at each of ``paths`` where flattening lost it."""
    if not isinstance(tree, dict):
        _fail(TypeError, f"{path}['group_state']", f"must be a dict, got {type(tree).__name__}")
    if not isinstance(paths, (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and all(isinstance(k, (str, int)) for k in p) for p in paths):
        _fail(TypeError, f"{path}['group_dicts']", f"must be a list of key paths, got {paths!r}")
    tree = dict(tree)
    for keys in paths:
        node = tree
        for key in keys:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif isinstance(child, dict):
                child = node[key] = dict(child)  # copy on the way down: the caller's dict stays as given
            else:
                _fail(TypeError, f"{path}['group_state']{''.join(f'[{k!r}]' for k in keys)}",
                      f"must be a dict, got {type(child).__name__}")
            node = child
    return tree


def check_state_dict(optimizer, state_dict: Any) -> LoadedState:
    """What ``optimizer`` holds after loading ``state_dict``; raises before building anything bad."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    for key in ("state", "param_groups"):
        if key not in state_dict:
            raise ValueError(f"state_dict has no {key!r} entry")
    if META_KEY in state_dict:
        meta = state_dict[META_KEY]
    elif _groups_carry_meta(state_dict["param_groups"]):
        meta = _meta_from_groups(state_dict["param_groups"])
    elif type(optimizer).__qualname__ in _TORCH_STATE_KEYS:
        state_dict = from_torch_optim(optimizer, state_dict)
        meta = state_dict[META_KEY]
    else:
        raise ValueError("state_dict has no 'gradkit' entry (at the top or in its param groups): it was not saved "
                         "by a gradkit optimizer (torch.optim state_dicts load only into gradkit's "
                         f"{', '.join(_TORCH_STATE_KEYS)})")
    meta = _check_meta(optimizer, meta)
    groups, id_map = _check_groups(optimizer, state_dict["param_groups"])
    expected, init_group_states = expected_state(optimizer, groups)
    state = _check_state(optimizer, state_dict["state"], id_map, expected)
    group_states = _check_group_states(optimizer, meta["group_states"], init_group_states)
    return LoadedState(groups, state, group_states, meta["skipped_steps"])


def _groups_carry_meta(groups: Any) -> bool:
    return isinstance(groups, (list, tuple)) and bool(groups) and all(
        isinstance(g, dict) and META_KEY in g for g in groups)


def dtype_as_text(value: Any) -> Any:
    """A ``torch.dtype`` hyperparameter (Muon's ``ns_dtype``) as the text ``"torch.float32"``: DCP's
    ``full_state_dict`` refuses dtype values. :func:`dtype_from_text` reads it back on load."""
    return str(value) if isinstance(value, torch.dtype) else value


def dtype_from_text(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("torch.") and isinstance(getattr(torch, value[6:], None), torch.dtype):
        return getattr(torch, value[6:])
    return value


def _meta_from_groups(groups: list) -> dict:
    """The top-level gradkit entry, rebuilt from the share each param group carries."""
    first = groups[0][META_KEY]
    states = []
    for i, group in enumerate(groups):
        share, path = group[META_KEY], f"param_groups[{i}]['gradkit']"
        if not isinstance(share, dict):
            _fail(TypeError, path, f"must be a dict, got {type(share).__name__}")
        for field in ("format", "recipe", "transform", "skipped_steps"):
            if field not in share:
                _fail(ValueError, path, f"has no {field!r} field")
            if share[field] != first[field]:
                _fail(ValueError, f"{path}[{field!r}]", f"is {share[field]!r}, but param group 0 says {first[field]!r}")
        # DCP's flattening drops empty dicts: an empty group state comes back as no entry at all
        states.append(_with_dicts(path, share.get("group_state", {}), share.get("group_dicts", [])))
    return {"format": first["format"], "recipe": first["recipe"], "transform": first["transform"],
            "group_states": states, "skipped_steps": first["skipped_steps"]}


# -- torch.optim state_dicts ----------------------------------------------------------------------------
# torch.optim's per-param state keys and gradkit's (namespaced by the transform that keeps them)
_ADAM_KEYS = {"exp_avg": "adam.exp_avg", "exp_avg_sq": "adam.exp_avg_sq", "max_exp_avg_sq": "adam.max_exp_avg_sq"}
_TORCH_STATE_KEYS = {"Adam": _ADAM_KEYS, "AdamW": _ADAM_KEYS, "SGD": {"momentum_buffer": "momentum.momentum_buffer"}}
# how torch.optim runs a step (kernels, graph capture), not what it computes
_TORCH_IMPLEMENTATION_KEYS = ("foreach", "fused", "capturable", "differentiable")


def from_torch_optim(optimizer, state_dict: dict) -> dict:
    """A ``torch.optim.Adam``/``AdamW``/``SGD`` state_dict in gradkit's form, for the gradkit optimizer
    of the same name: state keys take the namespace of the transform that keeps them
    (``exp_avg`` -> ``adam.exp_avg``, ``momentum_buffer`` -> ``momentum.momentum_buffer``), the step
    tensor becomes an int, the param groups lose torch.optim's implementation switches (``foreach``,
    ``fused``, ``capturable``, ``differentiable``), and a group saved before torch.optim recorded
    ``decoupled_weight_decay`` takes the recipe's (``AdamW``: True). torch.optim's SGD counts no steps; a param with a
    momentum buffer has been stepped, so it resumes at step 1 (the count only tells the first step,
    which initialises the buffer, from the others). The result is then checked like any state_dict."""
    recipe = type(optimizer).__qualname__
    keys = _TORCH_STATE_KEYS.get(recipe)
    if keys is None:
        raise ValueError(f"a torch.optim state_dict loads into gradkit's {', '.join(_TORCH_STATE_KEYS)}, not {recipe}")
    saved_state, saved_groups = state_dict["state"], state_dict["param_groups"]
    if not isinstance(saved_state, dict):
        _fail(TypeError, "['state']", f"must be a dict from param id to dict, got {type(saved_state).__name__}")
    if not isinstance(saved_groups, (list, tuple)) or not all(isinstance(g, dict) for g in saved_groups):
        _fail(TypeError, "['param_groups']", "must be a list of dicts")
    state = {}
    for pid, entry in saved_state.items():
        path = f"state[{pid!r}]"
        if not isinstance(entry, dict):
            _fail(TypeError, path, f"must be a dict, got {type(entry).__name__}")
        new: dict[str, Any] = {}
        for key, value in entry.items():
            if value is None:
                continue  # torch's SGD without momentum keeps momentum_buffer=None
            if key == "step":
                continue
            if key not in keys:
                _fail(ValueError, f"{path}[{key!r}]", f"is not a state key of torch.optim.{recipe} "
                                                     f"(known: step, {', '.join(keys)})")
            new[keys[key]] = value
        if new or "step" in entry:
            new["step"] = _torch_step(f"{path}['step']", entry.get("step"), bool(new))
        state[pid] = new
    # torch.optim before 2.6 saved no decoupled_weight_decay: the recipe (Adam or AdamW) fixes it
    implied = {k: optimizer.defaults[k] for k in ("decoupled_weight_decay",) if k in optimizer.defaults}
    groups = [{**implied, **{k: v for k, v in g.items() if k not in _TORCH_IMPLEMENTATION_KEYS}} for g in saved_groups]
    meta = {"format": FORMAT, "recipe": recipe, "transform": optimizer.transform.signature(),
            "group_states": [{} for _ in groups], "skipped_steps": 0}
    return {"state": state, "param_groups": groups, META_KEY: meta}


def _torch_step(path: str, step: Any, stepped: bool) -> Any:
    if step is None:
        return 1 if stepped else 0
    if isinstance(step, Tensor):
        if step.numel() != 1 or step.is_complex():
            _fail(ValueError, path, f"must be a one-element step count, got shape {tuple(step.shape)} {step.dtype}")
        step = step.item()
    if isinstance(step, float) and step.is_integer():
        step = int(step)
    return step  # anything else is refused with the path by the common check


# -- the gradkit entry ------------------------------------------------------------------------------
def _check_meta(optimizer, meta: Any) -> dict:
    if not isinstance(meta, dict):
        _fail(TypeError, "['gradkit']", f"must be a dict, got {type(meta).__name__}")
    for field in _META_FIELDS:
        if field not in meta:
            _fail(ValueError, "['gradkit']", f"has no {field!r} field")
    if not _is_int(meta["format"]) or meta["format"] != FORMAT:
        _fail(ValueError, "['gradkit']['format']", f"is {meta['format']!r}; this version reads format {FORMAT}")
    recipe, saved = meta["recipe"], meta["transform"]
    mine = optimizer.transform.signature()
    if not isinstance(recipe, str) or not isinstance(saved, (list, tuple)) or not all(isinstance(s, str) for s in saved):
        _fail(TypeError, "['gradkit']", f"names its recipe {recipe!r} and transforms {saved!r}: expected a str "
                                        "and a list of str")
    if recipe != type(optimizer).__qualname__ or list(saved) != mine:
        raise ValueError(f"state_dict was saved by {recipe} with transforms {list(saved)}, "
                         f"but this optimizer is {type(optimizer).__qualname__} with {mine}")
    skipped = meta["skipped_steps"]
    if not _is_int(skipped) or skipped < 0:
        _fail(TypeError if not _is_int(skipped) else ValueError, "['gradkit']['skipped_steps']",
              f"must be an int >= 0, got {skipped!r}")
    return meta


# -- param groups -------------------------------------------------------------------------------------
def _check_groups(optimizer, saved_groups: Any) -> tuple[list[dict], dict[Any, Tensor]]:
    if not isinstance(saved_groups, (list, tuple)):
        _fail(TypeError, "['param_groups']", f"must be a list of dicts, got {type(saved_groups).__name__}")
    if len(saved_groups) != len(optimizer.param_groups):
        raise ValueError(f"state_dict has {len(saved_groups)} param groups, this optimizer has "
                         f"{len(optimizer.param_groups)}")
    id_map: dict[Any, Tensor] = {}
    groups = []
    for i, (group, saved) in enumerate(zip(optimizer.param_groups, saved_groups)):
        path = f"param_groups[{i}]"
        if not isinstance(saved, dict):
            _fail(TypeError, path, f"must be a dict, got {type(saved).__name__}")
        ids = saved.get("params")
        if not isinstance(ids, (list, tuple)) or not (all(map(_is_int, ids)) or all(isinstance(pid, str) for pid in ids)):
            _fail(TypeError, f"{path}['params']", f"must be a list of int param ids (or of param names), got {ids!r}")
        if len(ids) != len(group["params"]):
            raise ValueError(f"param group {i} has {len(group['params'])} params, the state_dict's has {len(ids)}")
        for pid, p in zip(ids, group["params"]):
            if pid in id_map:
                _fail(ValueError, f"{path}['params']", f"lists param id {pid} twice")
            id_map[pid] = p
        for key in optimizer.defaults:
            if key not in saved:
                _fail(ValueError, path, f"has no {key!r} (a hyperparameter of this optimizer)")
        new = copy.deepcopy({k: dtype_from_text(v) for k, v in saved.items() if k not in _GROUP_ONLY})
        new["params"] = group["params"]
        if "param_names" in group:
            new["param_names"] = group["param_names"]
        try:
            optimizer.validate_group(new)
        except (TypeError, ValueError) as error:
            raise type(error)(f"state_dict {path}: {error}") from None
        except Exception as error:  # a validator tripped over a value of a kind it did not expect
            raise ValueError(f"state_dict {path}: a hyperparameter is malformed ({type(error).__name__}: {error})") from error
        groups.append(new)
    return groups, id_map


# -- per-parameter state --------------------------------------------------------------------------------
def fixed_lists(optimizer, state: dict) -> None:
    """A state_dict's per-param lists in a form whose keys and shapes do not change as training goes on
    (in place on ``state``, keyed by param index as torch.optim's state_dict).

    FRUGAL's block state is a list per param: one tensor while the param is in the state-full block, none
    otherwise. ``torch.distributed.checkpoint`` loads into a template built by a fresh optimizer, whose
    active block is another one, and refuses a checkpoint without the keys the template has. So each such
    list (of at most one tensor) is written as a tensor shaped like its param (zeros while the list is
    empty) and ``gradkit.held.<key>`` says how many tensors the list holds; a load turns it back into the
    list. The zeros cost a checkpoint as much as the state of a param in the block would."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    on_shards = set()  # sharded params whose state stays sharded (not stepped whole on an owner)
    for group in optimizer.param_groups:
        stepping = [p for p in group["params"] if p.numel()]
        if is_sharded(stepping) and owner_plan(optimizer.transform, stepping) is None:
            on_shards.update(id(p) for p in stepping)
    for pid, entry in list(state.items()):
        keys = [k for k, v in entry.items()
                if isinstance(v, list) and len(v) <= 1 and all(isinstance(t, Tensor) for t in v)]
        if not keys:
            continue
        entry = state[pid] = dict(entry)  # torch.optim's state_dict hands out the live per-param dicts
        for key in keys:
            value = entry[key]
            if value:
                entry[key] = value[0]
            else:
                p = params[pid]
                dtype = optimizer.compute_dtype(p)
                entry[key] = (torch.zeros_like(p, dtype=dtype) if id(p) in on_shards
                              else torch.zeros(p.shape, dtype=dtype, device=p.device))
            entry[HELD + key] = len(value)


def lists_from_fixed(path: str, entry: dict) -> dict:
    """``entry`` with the lists that :func:`fixed_lists` wrote as tensors back in list form."""
    held = {k[len(HELD):]: v for k, v in entry.items() if isinstance(k, str) and k.startswith(HELD)}
    if not held:
        return entry
    entry = {k: v for k, v in entry.items() if not (isinstance(k, str) and k.startswith(HELD))}
    for key, count in held.items():
        if isinstance(count, Tensor) and count.numel() == 1 and not count.is_floating_point():
            count = int(count.item())
        if not _is_int(count) or count not in (0, 1):
            _fail(ValueError, f"{path}[{HELD + key!r}]", f"must be 0 or 1 (tensors held in {key!r}), got {count!r}")
        if key not in entry:
            _fail(ValueError, path, f"has {HELD + key!r} but no {key!r}")
        value = entry[key]
        if not isinstance(value, Tensor):
            _fail(TypeError, f"{path}[{key!r}]", f"must be a tensor (with {HELD + key!r}), got {type(value).__name__}")
        entry[key] = [value] if count else []
    return entry


def expected_state(optimizer, groups: list[dict]) -> tuple[dict[Tensor, dict[str, Any]], list[dict]]:
    """What ``init`` builds for each param of ``groups`` (on the meta device: no memory), and the
    group-level state it leaves."""
    out: dict[Tensor, dict[str, Any]] = {}
    group_states = []
    for group in groups:
        metas = [torch.empty(p.shape, device="meta", dtype=optimizer.compute_dtype(p)) for p in group["params"]]
        group_state: dict = {}
        state = optimizer.transform.init(metas, StepContext(group, [0] * len(metas), group_state))
        # sharded params stepped on owner ranks (core/redistribute.py): another rank's matrices keep only a step here
        stepping = [p for p in group["params"] if p.numel()]  # the params a step hands to the owners' plan
        plan = owner_plan(optimizer.transform, stepping) if is_sharded(stepping) else None
        mine = None if plan is None else {id(stepping[k]) for k in plan.mine}
        storage = getattr(optimizer, "storage", None)
        for j, p in enumerate(group["params"]):
            held = mine is None or id(p) in mine
            out[p] = {k: v[j] for k, v in state.items() if v[j] is not None} if held else {}
            if storage is not None:  # compressed between steps (core/storage.py)
                out[p] = storage.layout(out[p], optimizer.transform.kind_of)
        group_states.append(group_state)
    return out, group_states


def _check_state(optimizer, saved_state: Any, id_map: dict, expected: dict) -> dict[Tensor, dict]:
    if not isinstance(saved_state, dict):
        _fail(TypeError, "['state']", f"must be a dict from param id to dict, got {type(saved_state).__name__}")
    new_state: dict[Tensor, dict] = {}
    for pid, entry in saved_state.items():
        path = f"state[{pid!r}]"
        if pid not in id_map:
            raise ValueError(f"state_dict has state for param id {pid!r}, which no param group holds")
        if not isinstance(entry, dict):
            _fail(TypeError, path, f"must be a dict, got {type(entry).__name__}")
        if not entry:
            continue  # an empty entry is a param that has not been stepped yet
        entry = lists_from_fixed(path, entry)
        p = id_map[pid]
        layout = expected[p]
        entry = convert_entry(getattr(optimizer, "storage", None), path, entry, layout, optimizer.transform.kind_of,
                              optimizer.compute_dtype(p))
        if "step" not in entry:
            _fail(ValueError, path, f"holds {sorted(map(str, entry))} but no 'step': a state without its step "
                                    "count cannot be resumed")
        step = entry["step"]
        if not _is_int(step) or step < 0:
            _fail(TypeError if not _is_int(step) else ValueError, f"{path}['step']", f"must be an int >= 0, got {step!r}")
        for key in entry:
            if key != "step" and key not in layout:
                _fail(ValueError, f"{path}[{key!r}]", "is not produced by this optimizer's transforms (of this param)")
        for key, want in layout.items():
            if key not in entry and not isinstance(want, list):
                _fail(ValueError, path, f"has no {key!r}, which this optimizer's transforms keep for this param")
        loaded = {"step": step}
        for key, want in layout.items():
            # an empty list (FRUGAL's block state of an inactive block) is lost by DCP's flattening, which keeps leaves only
            value = entry.get(key, [])
            loaded[key] = _check_value(optimizer, f"{path}[{key!r}]", value, want, p, optimizer.transform.kind_of(key))
        new_state[p] = loaded
    return new_state


def _check_value(optimizer, path: str, value: Any, want: Any, p: Tensor, kind: Any) -> Any:
    if isinstance(want, Tensor):
        return _check_tensor(optimizer, path, value, want, p, kind)
    if isinstance(want, list):  # a list whose length the layout does not fix: tensors shaped like the param
        if not isinstance(value, list):
            _fail(TypeError, path, f"must be a list, got {type(value).__name__}")
        like = torch.empty(p.shape, device="meta", dtype=optimizer.compute_dtype(p))
        return [_check_tensor(optimizer, f"{path}[{i}]", v, like, p, kind) for i, v in enumerate(value)]
    if _is_int(want):
        if not _is_int(value) or value < 0:
            _fail(TypeError if not _is_int(value) else ValueError, path, f"must be an int >= 0, got {value!r}")
        return value
    if type(value) is not type(want):
        _fail(TypeError, path, f"must be a {type(want).__name__}, got {type(value).__name__}")
    return copy.deepcopy(value)


def _check_tensor(optimizer, path: str, value: Any, want: Tensor, p: Tensor, kind: Any) -> Tensor:
    kind = as_kind(kind)
    if not isinstance(value, Tensor):
        _fail(TypeError, path, f"must be a tensor, got {type(value).__name__}")
    if value.layout != torch.strided:
        _fail(TypeError, path, f"must be a dense tensor, got layout {value.layout}")
    if value.shape != want.shape:
        _fail(ValueError, path, f"has shape {tuple(value.shape)}, expected {tuple(want.shape)}: the parameter layout differs")
    if want.is_floating_point():
        if not value.is_floating_point():
            _fail(TypeError, path, f"must be a floating-point tensor (it is kept in {want.dtype}), got {value.dtype}")
        if optimizer.nonfinite != "ignore" and value.device.type != "meta" and value.numel() and not bool(value.isfinite().all()):
            _fail(ValueError, path, f"holds inf or nan, which nonfinite={optimizer.nonfinite!r} never lets into "
                                    "the state (construct the optimizer with nonfinite='ignore' to load it)")
        if kind.non_negative and value.device.type != "meta" and value.numel() and bool((value < 0).any()):
            _fail(ValueError, path, f"holds negative values, but it is a {kind.role} (never negative)")
    elif value.dtype != want.dtype:
        _fail(TypeError, path, f"must have dtype {want.dtype}, got {value.dtype}")
    elif kind.role == "index" and value.numel() and not bool(((value >= 0) & (value < max(p.numel(), 1))).all()):
        _fail(ValueError, path, f"holds indices outside [0, {p.numel()}) of its param")
    return value.detach().to(device=p.device, dtype=want.dtype, copy=True)


# -- group-level state ----------------------------------------------------------------------------------
def check_group_states(optimizer, saved: Any, where: str) -> list[dict]:
    """``saved`` (one group-level state per param group of ``optimizer``), checked as a loaded state_dict's
    and copied; ``where`` formats each group's index into the path an error names."""
    return _check_group_states(optimizer, saved, expected_state(optimizer, optimizer.param_groups)[1], where)


def _check_group_states(optimizer, saved: Any, init_states: list[dict], where: str | None = None) -> list[dict]:
    path = "['gradkit']['group_states']"
    n = len(optimizer.param_groups)
    if not isinstance(saved, (list, tuple)):
        _fail(TypeError, path, f"must be a list of {n} dicts, got {type(saved).__name__}")
    if len(saved) != n:
        _fail(ValueError, path, f"has {len(saved)} entries, expected one per param group ({n})")
    namespaces = set(optimizer.transform.namespaces)
    owners = dict(zip(optimizer.transform.namespaces, optimizer.transform.transforms))
    for i, (state, init) in enumerate(zip(saved, init_states)):
        here = f"{path}[{i}]" if where is None else where.format(i)
        if not isinstance(state, dict):
            _fail(TypeError, here, f"must be a dict, got {type(state).__name__}")
        for key, value in state.items():
            if key not in namespaces:
                _fail(ValueError, f"{here}[{key!r}]", f"is not a namespace of this optimizer's transforms {sorted(namespaces)}")
            if not isinstance(value, dict):
                _fail(TypeError, f"{here}[{key!r}]", f"must be a dict, got {type(value).__name__}")
            needed = getattr(owners[key], "group_state_keys", ())
            missing = [k for k in needed if k not in value]
            if value and missing:  # an empty group state is one not started yet: the next step starts it
                _fail(ValueError, f"{here}[{key!r}]", f"has no {missing[0]!r}, which this transform keeps once it "
                                                      f"has stepped ({', '.join(needed)})")
        current = optimizer.group_states[i] if i < len(optimizer.group_states) else {}
        _check_tree(here, state, _merged(init, current))
    return copy.deepcopy(list(saved))


def _merged(first: Any, second: Any) -> Any:
    """What ``init`` gives, completed by what the optimizer holds now: the types a loaded group state keeps."""
    if isinstance(first, dict) and isinstance(second, dict):
        return {k: _merged(first.get(k), second.get(k)) if k in first else second[k] for k in {**second, **first}}
    return first if first is not None else second


def _check_tree(path: str, value: Any, init: Any) -> None:
    """Plain data only; where ``init`` gave a value, the same type (and ints >= 0)."""
    if init is not None and type(value) is not type(init) and not (isinstance(value, Tensor) and isinstance(init, Tensor)):
        _fail(TypeError, path, f"must be a {type(init).__name__}, got {type(value).__name__}")
    if isinstance(init, Tensor) and (value.shape != init.shape or value.is_floating_point() != init.is_floating_point()):
        _fail(TypeError, path, f"must be a tensor of shape {tuple(init.shape)} and dtype kind of {init.dtype}, "
                               f"got shape {tuple(value.shape)} {value.dtype}")
    if _is_int(init) and value < 0:
        _fail(ValueError, path, f"must be an int >= 0, got {value!r}")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                _fail(TypeError, path, f"has a key of type {type(key).__name__}; keys are str or int")
            _check_tree(f"{path}[{key!r}]", item, init.get(key) if isinstance(init, dict) else None)
    elif isinstance(value, (list, tuple)):
        for j, item in enumerate(value):
            _check_tree(f"{path}[{j}]", item, None)
    elif not isinstance(value, _LEAVES):
        _fail(TypeError, path, f"holds a {type(value).__name__}; group state holds numbers, strings, tensors "
                               "and lists or dicts of them")
