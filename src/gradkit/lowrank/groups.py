"""Which parameters are projected and which stay fully state-full; the base class of the recipes.

The low-rank recipes split each param group in two: parameters to project (``project=True``) and
parameters kept fully state-full (``project=False``: by default embeddings, the output head and norms,
as in FRUGAL and GaLore). The rule is ``full_state``:

* ``None`` (default): a parameter stays state-full when its name matches :data:`DEFAULT_FULL_STATE`
  (or it is not a matrix; the projectors leave vectors state-full anyway);
* a string: a regular expression searched in the parameter's name;
* a callable ``predicate(name, param) -> bool`` (``name`` is None when params are given without names).

Give the parameters with their names (``model.named_parameters()``) for name rules to apply; without
names every matrix is projected. A group that already sets ``project`` is kept as it is. The groups are
ordered projected-then-full within each of your groups, and empty ones are dropped.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from torch import Tensor

from gradkit.core.optimizer import Optimizer

__all__ = ["DEFAULT_FULL_STATE", "split_param_groups", "LowRankOptimizer"]

DEFAULT_FULL_STATE = r"(^|\.)(embed|embedding|embeddings|wte|wpe|tok_embeddings|head|lm_head)(\.|$)|norm"


def _rule(full_state) -> Callable[[str | None, Tensor], bool]:
    if full_state is None:
        full_state = DEFAULT_FULL_STATE
    if isinstance(full_state, str):
        try:
            pattern = re.compile(full_state)
        except re.error as err:
            raise ValueError(f"full_state must be a valid regular expression, got {full_state!r}: {err}") from None
        return lambda name, p: p.dim() < 2 or (name is not None and pattern.search(name) is not None)
    if callable(full_state):
        return lambda name, p: bool(full_state(name, p))
    raise TypeError(f"full_state must be None, a regular expression string or a callable (name, param) -> bool, "
                    f"got {type(full_state).__name__}")


def _named(params: Iterable[Any]) -> list[tuple[str | None, Tensor]]:
    out = []
    for item in params:
        if isinstance(item, Tensor):
            out.append((None, item))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Tensor):
            out.append((str(item[0]), item[1]))
        else:
            raise TypeError(f"params must hold tensors or (name, tensor) pairs, got {type(item).__name__}")
    return out


def split_param_groups(params: Iterable[Any], full_state=None) -> list[dict]:
    """Param groups with a ``project`` flag per group, split by the ``full_state`` rule.

    Args:
        params: parameters, (name, parameter) pairs or param groups; names are needed for name rules.
        full_state: parameters that keep full state (``project=False``): a regular expression searched in
            the names (default :data:`DEFAULT_FULL_STATE`: embeddings, heads, norms) or a predicate
            ``(name, param) -> bool``. Tensors with fewer than two dimensions always do.

    Example:
        >>> import torch
        >>> model = torch.nn.ModuleDict({"embed": torch.nn.Embedding(10, 4), "up": torch.nn.Linear(4, 8)})
        >>> [(g["project"], len(g["params"])) for g in split_param_groups(model.named_parameters())]
        [(True, 1), (False, 2)]
    """
    rule = _rule(full_state)
    if isinstance(params, Tensor):
        raise TypeError("params must be an iterable of tensors, (name, tensor) pairs or dicts, got a Tensor")
    items = list(params)
    groups = items if items and all(isinstance(g, dict) for g in items) else [{"params": items}]
    out = []
    for group in groups:
        if not isinstance(group, dict):
            raise TypeError("params must be all dicts (param groups) or none")
        raw = group["params"]
        named = _named([raw] if isinstance(raw, Tensor) else raw)
        rest = {k: v for k, v in group.items() if k != "params"}
        if "project" in group:
            out.append({**rest, "params": _as_given(named)})
            continue
        projected = [(n, p) for n, p in named if not rule(n, p)]
        full = [(n, p) for n, p in named if rule(n, p)]
        for part, flag in ((projected, True), (full, False)):
            if part:
                out.append({**rest, "params": _as_given(part), "project": flag})
    return out  # empty: torch.optim raises its own "empty parameter list" error


def _as_given(named: list[tuple[str | None, Tensor]]) -> list:
    if all(n is None for n, _ in named):
        return [p for _, p in named]
    if any(n is None for n, _ in named):
        raise TypeError("a param group mixes named and unnamed parameters")
    return named


class LowRankOptimizer(Optimizer):
    """A gradkit Optimizer whose params are split by :func:`split_param_groups` before construction.

    Args:
        params: as for any optimizer (named parameters let ``full_state`` rules match names).
        transform: the chain; it reads each group's ``project`` flag (``hp("project")``).
        defaults: hyperparameter defaults, as ``gradkit.Optimizer``.
        full_state: see :func:`split_param_groups`.
        nonfinite, state_dtype: as ``gradkit.Optimizer``.

    Blockwise state lives in per-parameter lists (present only while a parameter is state-full).
    """

    def __init__(self, params, transform, defaults, *, full_state=None, nonfinite="raise", state_dtype=None):
        super().__init__(split_param_groups(params, full_state), transform, {"project": True, **defaults},
                         nonfinite=nonfinite, state_dtype=state_dtype)
