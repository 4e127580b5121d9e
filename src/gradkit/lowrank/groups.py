"""Which parameters are projected and which stay fully state-full; the base class of the recipes.

The low-rank recipes split each param group in two: parameters to project (``project=True``) and
parameters kept fully state-full (``project=False``: by default embeddings, the output head and norms,
as in FRUGAL and GaLore). The rule is ``full_state``:

* ``None`` (default): a parameter stays state-full when its name matches :data:`DEFAULT_FULL_STATE`
  (or it is not a matrix; the projectors leave vectors state-full anyway);
* a string: a regular expression searched in the parameter's name;
* a callable ``predicate(name, param) -> bool`` (``name`` is None when params are given without names).

Name rules need the parameters' names: give ``model.named_parameters()``, or ``gradkit.param_groups(model)``,
whose groups also carry each parameter's ``kind`` (decided by module type), so that only ``"hidden"``
matrices are projected even where no name matches; the name rule applies on top. Without names the default
rule cannot see embeddings or the head: every matrix is projected and a warning names them. A regular
expression ``full_state`` without names is a ``ValueError``; one that matches no name is warned about.
A group that already sets ``project`` is kept as it is. The groups are ordered projected-then-full
within each of your groups, and empty ones are dropped.
"""
from __future__ import annotations

import re
import warnings
from typing import Any, Callable, Iterable

from torch import Tensor

from gradkit.core.optimizer import Optimizer
from gradkit.core.sharding import check_groups_kept
from gradkit.grouping import RoutingWarning, check_kind

__all__ = ["DEFAULT_FULL_STATE", "split_param_groups", "LowRankOptimizer"]

DEFAULT_FULL_STATE = r"(^|\.)(embed|embedding|embeddings|wte|wpe|tok_embeddings|head|lm_head)(\.|$)|norm"


class _Rule:
    """The ``full_state`` rule over (name, param); remembers whether a given regular expression ever matched
    and which matrices it could not judge for want of a name."""

    def __init__(self, full_state):
        self.given = full_state is not None
        self.matched = False
        self.unnamed: list[str] = []
        if full_state is None:
            full_state = DEFAULT_FULL_STATE
        self.predicate = full_state if callable(full_state) else None
        self.pattern = None
        if self.predicate is None:
            if not isinstance(full_state, str):
                raise TypeError(f"full_state must be None, a regular expression string or a callable (name, param) -> "
                                f"bool, got {type(full_state).__name__}")
            try:
                self.pattern = re.compile(full_state)
            except re.error as err:
                raise ValueError(f"full_state must be a valid regular expression, got {full_state!r}: {err}") from None

    def __call__(self, name: str | None, p: Tensor, where: str) -> bool:
        if self.predicate is not None:
            return bool(self.predicate(name, p))
        if p.dim() < 2:
            return True
        if name is None:
            if self.given:
                raise ValueError(f"full_state={self.pattern.pattern!r} is a name rule, and these params have no names "
                                 "(as when a framework passes model.parameters()): pass gradkit.param_groups(model) "
                                 "(grouped by module kind, with names) or model.named_parameters()")
            self.unnamed.append(f"{where} {tuple(p.shape)}")
            return False
        hit = self.pattern.search(name) is not None
        self.matched |= hit
        return hit

    def report(self) -> None:
        if self.unnamed:
            warnings.warn(f"the default full_state rule keeps embeddings, the output head and norms state-full by "
                          f"name, but {len(self.unnamed)} matrices came without names and are projected: "
                          f"{', '.join(self.unnamed)}. Pass gradkit.param_groups(model) or model.named_parameters() "
                          "to route them, or full_state=<callable (name, param) -> bool> to decide without names",
                          RoutingWarning, stacklevel=5)
        if self.given and self.pattern is not None and not self.matched:
            warnings.warn(f"full_state={self.pattern.pattern!r} matched no parameter name, so it keeps no matrix "
                          "state-full", RoutingWarning, stacklevel=5)


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
    rule = _Rule(full_state)
    if isinstance(params, Tensor):
        raise TypeError("params must be an iterable of tensors, (name, tensor) pairs or dicts, got a Tensor")
    items = list(params)
    groups = items if items and all(isinstance(g, dict) for g in items) else [{"params": items}]
    out = []
    for index, group in enumerate(groups):
        if not isinstance(group, dict):
            raise TypeError("params must be all dicts (param groups) or none")
        raw = group["params"]
        named = _named([raw] if isinstance(raw, Tensor) else raw)
        rest = {k: v for k, v in group.items() if k != "params"}
        if "project" in group:
            out.append({**rest, "params": _as_given(named)})
            continue
        kind = check_kind(rest)
        keep = [_keep_full(n, p, kind, rule, f"group {index} param {i}") for i, (n, p) in enumerate(named)]
        projected = [item for item, k in zip(named, keep) if not k]
        full = [item for item, k in zip(named, keep) if k]
        for part, flag in ((projected, True), (full, False)):
            if part:
                out.append({**rest, "params": _as_given(part), "project": flag})
    rule.report()
    return out  # empty: torch.optim raises its own "empty parameter list" error


def _keep_full(name: str | None, p: Tensor, kind: str | None, rule: _Rule, where: str) -> bool:
    if kind in (None, "hidden"):
        return rule(name, p, where)
    if name is not None:
        rule(name, p, where)  # state-full anyway; still counts as a match of a given pattern
    return True


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
        params = list(params) if not isinstance(params, Tensor) else params
        groups = split_param_groups(params, full_state)
        check_groups_kept(type(self).__name__, "project", "gradkit.lowrank.split_param_groups(model.parameters())",
                          params, groups)
        super().__init__(groups, transform, {"project": True, **defaults}, nonfinite=nonfinite,
                         state_dtype=state_dtype)
