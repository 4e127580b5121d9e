"""Exact optimizer-state accounting: the bytes of every tensor an optimizer keeps."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

__all__ = ["state_bytes", "tensor_bytes"]

BY = (None, "param", "key", "kind")


def tensor_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of all tensors in a (nested) container of dicts, lists, tuples and sets; with ``seen`` (a set of
    tensor ids, filled as it goes) each tensor counts once however often it is referenced. A wrapper tensor
    subclass (``__tensor_flatten__``, such as torchao's 8-bit and 4-bit optimizer states, which report the
    dequantized dtype) counts the tensors it wraps."""
    if isinstance(obj, torch.Tensor):
        if seen is not None:
            if id(obj) in seen:
                return 0
            seen.add(id(obj))
        flatten = getattr(obj, "__tensor_flatten__", None)
        if flatten is not None:
            return sum(tensor_bytes(getattr(obj, name), seen) for name in flatten()[0])
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sum(tensor_bytes(v, seen) for v in obj)
    return 0


def state_bytes(optimizer: torch.optim.Optimizer, by: str | None = None):
    """Total bytes of an optimizer's state (any ``torch.optim.Optimizer``).

    ``by="param"`` gives {param index: bytes} (index in param-group order), ``by="key"`` gives
    {state key: bytes}, ``by="kind"`` gives {kind category: bytes} using the kinds the transforms declare
    (:mod:`gradkit.core.state`: "moment", "projection", "index", ...; group-level state is "group"). For an
    optimizer that is not a gradkit one every key counts as "moment". Step counters are Python ints: 0 bytes.
    """
    if by not in BY:
        raise ValueError(f"by must be one of {BY}, got {by!r}")
    index = {id(p): i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
    transform = getattr(optimizer, "transform", None)
    kind_of = (lambda key: transform.kind_of(key).category) if transform is not None else (lambda key: "moment")
    totals: dict[Any, int] = defaultdict(int)
    for p, entries in optimizer.state.items():
        items = entries.items() if isinstance(entries, dict) else [("", entries)]
        for key, value in items:
            n = tensor_bytes(value)
            if by == "param":
                totals[index.get(id(p), p)] += n
            elif by == "key":
                totals[key] += n
            else:
                if key != "step":
                    totals[kind_of(key)] += n
    group_bytes = tensor_bytes(getattr(optimizer, "group_states", []))
    if by is None:
        return sum(totals.values()) + group_bytes
    if group_bytes and by in ("key", "kind"):
        totals["group"] += group_bytes
    return dict(totals)
