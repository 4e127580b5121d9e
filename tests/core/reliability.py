"""Shared by the reliability tests: an exact snapshot of everything an optimizer holds, and small runs."""
from __future__ import annotations

import copy

import torch
from torch import nn

from gradkit.registry import get_optimizer, list_entries

from .helpers import data, tiny_mlp

NAMES = [e.name for e in list_entries("optimizer")]


def make(name: str, params, **kwargs) -> torch.optim.Optimizer:
    return get_optimizer(name)(params, **kwargs)


def trained(name: str, steps: int = 3, seed: int = 0, **kwargs):
    """A tiny MLP and its optimizer after ``steps`` full-batch steps."""
    model = tiny_mlp(seed)
    opt = make(name, model.named_parameters(), **kwargs)
    for _ in range(steps):
        set_grads(model)
        opt.step()
    return model, opt


def set_grads(model: nn.Module, seed: int = 1) -> None:
    x, y = data(seed)
    for p in model.parameters():
        p.grad = None
    nn.functional.cross_entropy(model(x), y).backward()


def _copy(value):
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dtype, value.device, value.detach().clone())
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    return copy.deepcopy(value)


def snapshot(opt, model: nn.Module | None = None) -> dict:
    """Everything the optimizer holds (and the model's params), copied exactly."""
    return {
        "groups": [{k: (list(map(id, v)) if k == "params" else _copy(v)) for k, v in g.items()} for g in opt.param_groups],
        "state": {id(p): _copy(s) for p, s in opt.state.items()},
        "group_states": _copy(opt.group_states),
        "skipped_steps": opt.skipped_steps,
        "params": [_copy(p) for p in model.parameters()] if model is not None else None,
    }


def same(a, b) -> bool:
    """Exact equality of two snapshots (tensors bitwise, with dtype and device; nan equals nan)."""
    if isinstance(a, tuple) and len(a) == 4 and a[0] == "tensor":
        return (isinstance(b, tuple) and len(b) == 4 and b[0] == "tensor" and a[1:3] == b[1:3]
                and a[3].shape == b[3].shape and torch.equal(a[3].nan_to_num(), b[3].nan_to_num())
                and torch.equal(a[3].isnan(), b[3].isnan()))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return type(a) is type(b) and a == b
