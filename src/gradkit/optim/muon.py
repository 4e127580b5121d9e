"""Muon: orthogonalized momentum for hidden matrices, AdamW for the rest, in one optimizer.

Jordan, Jin, Boza, You, Cesista, Newhouse & Bernstein, "Muon: An optimizer for hidden layers in neural
networks" (2024), https://kellerjordan.github.io/posts/muon/; official code
https://github.com/KellerJordan/Muon (``MuonWithAuxAdam``). Read as the spectral-norm trust-region
method of Kovalev, "Understanding Gradient Orthogonalization for Deep Learning via Non-Euclidean
Trust-Region Optimization", arXiv:2503.12645.

    Muon groups:   u <- NS5(nesterov momentum) * sqrt(max(1, rows / cols))   (scale_by_trust_region, spectral)
    AdamW groups:  u <- m_hat / (sqrt(v_hat) + eps)                           (scale_by_adam)
    both:          p <- p * (1 - lr * wd) - lr * u

Each param group carries ``use_muon``; one chain serves both kinds through ``select_by_group``.
Differences from the official code: conv weights' shape factor uses the flattened matrix (see
``scale_by_trust_region``); the AdamW second moment is updated as ``b2 v + (1 - b2) g^2`` and divided
as ``sqrt(v) / sqrt(1 - b2^t)`` (torch.optim's form; the official code lerps and divides inside the
square root), equal up to float rounding.
"""
from __future__ import annotations

import warnings
from fnmatch import fnmatchcase
from typing import Any, Callable, Iterable

import torch

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.sharding import check_groups_kept
from gradkit.core.transform import chain
from gradkit.grouping import RoutingWarning, check_kind
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_adam, scale_by_learning_rate
from gradkit.transforms._checks import betas as check_betas, non_negative, positive
from gradkit.transforms.orthogonalization import MUON_COEFFICIENTS
from gradkit.transforms.select import select_by_group
from gradkit.transforms.trust_region import scale_by_trust_region

__all__ = ["Muon", "split_muon_groups"]

_ADAMW_KEYS = ("lr", "betas", "eps", "weight_decay")


def _selector(adamw) -> tuple[Callable[[str | None, torch.Tensor], bool], set[str]]:
    """The AdamW predicate, and the set of patterns that have matched nothing yet (emptied as they match)."""
    if adamw is None:
        return (lambda name, p: False), set()
    if callable(adamw):
        return (lambda name, p: bool(adamw(name, p))), set()
    patterns = [adamw] if isinstance(adamw, str) else list(adamw)
    if not all(isinstance(x, str) for x in patterns):
        raise TypeError(f"adamw must be None, a name pattern, a list of name patterns or a predicate (name, param) -> bool, "
                        f"got {adamw!r}")
    unmatched = set(patterns)

    def select(name, p):
        if name is None:
            raise ValueError("adamw name patterns need parameter names, and these params have none (as when a "
                             "framework passes model.parameters()): pass gradkit.param_groups(model) (grouped by "
                             "module kind, with names) or model.named_parameters()")
        hits = {pattern for pattern in patterns if fnmatchcase(name, pattern)}
        unmatched.difference_update(hits)
        return bool(hits)

    return select, unmatched


def _to_muon(name, p, kind, select) -> bool:
    if p.ndim >= 2 and kind in (None, "hidden"):
        return not select(name, p)
    if name is not None:
        select(name, p)  # AdamW anyway; still counts as a match of the patterns
    return False


def _items(params) -> list[tuple[str | None, torch.Tensor]]:
    if isinstance(params, torch.Tensor):
        return [(None, params)]
    out = []
    for item in params:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], torch.Tensor):
            out.append((str(item[0]), item[1]))
        elif isinstance(item, torch.Tensor):
            out.append((None, item))
        else:
            raise TypeError(f"params must hold tensors or (name, tensor) pairs, got {type(item).__name__}")
    return out


def _pack(items):
    named = all(n is not None for n, _ in items)
    return [(n, p) for n, p in items] if named else [p for _, p in items]


def split_muon_groups(params: Iterable[Any], adamw=None, *, adamw_lr=3e-4, adamw_betas=(0.9, 0.95), adamw_eps=1e-10,
                      adamw_weight_decay=0.0) -> list[dict]:
    """Param groups with ``use_muon`` set: matrices (ndim >= 2) not selected by ``adamw`` go to Muon.

    Args:
        params: parameters, (name, parameter) pairs or param groups, as for any optimizer.
        adamw: name patterns (``fnmatch``) of matrices that go to AdamW instead (embeddings, heads).
        adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay: the AdamW part's hyperparameters.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
        >>> groups = split_muon_groups(model.named_parameters(), adamw=["1.*"])
        >>> [(g["use_muon"], len(g["params"])) for g in groups]
        [(True, 1), (False, 3)]

    A group that already sets ``use_muon`` is kept as given. In a group with a ``kind``
    (:func:`gradkit.param_groups`) only ``"hidden"`` matrices can go to Muon. An ``adamw`` name pattern
    that matches no parameter is warned about (a pattern that routes nothing is most likely a typo).
    The AdamW part of a group takes ``adamw_lr`` etc. (a group's own ``adamw_lr``/``adamw_betas``/
    ``adamw_eps``/``adamw_weight_decay`` override them); its Muon part keeps the group's ``lr``/``weight_decay``.
    """
    params = list(params)
    if not params:
        raise ValueError("params is empty: Muon got no parameters")
    groups = params if isinstance(params[0], dict) else [{"params": params}]
    select, unmatched = _selector(adamw)
    out = []
    for group in groups:
        if not isinstance(group, dict):
            raise TypeError("params must be all tensors, all (name, tensor) pairs, or all param-group dicts")
        rest = {k: v for k, v in group.items() if k != "params"}
        items = _items(group["params"])
        adam_settings = {"lr": rest.pop("adamw_lr", adamw_lr), "betas": rest.pop("adamw_betas", adamw_betas),
                         "eps": rest.pop("adamw_eps", adamw_eps),
                         "weight_decay": rest.pop("adamw_weight_decay", adamw_weight_decay)}
        _check_adamw_settings(adam_settings)
        if "use_muon" in rest:
            if not isinstance(rest["use_muon"], bool):
                raise ValueError(f"use_muon must be True or False, got {rest['use_muon']!r}")
            extra = {} if rest["use_muon"] else {k: v for k, v in adam_settings.items() if k not in rest}
            out.append({**rest, **extra, "params": _pack(items)})
            continue
        kind = check_kind(rest)
        muon = [(n, p) for n, p in items if _to_muon(n, p, kind, select)]
        muon_ids = {id(p) for _, p in muon}
        adam = [(n, p) for n, p in items if id(p) not in muon_ids]
        if muon:
            out.append({**rest, "params": _pack(muon), "use_muon": True})
        if adam:
            kept = {k: v for k, v in rest.items() if k not in _ADAMW_KEYS}
            out.append({**kept, **adam_settings, "params": _pack(adam), "use_muon": False})
    if unmatched:
        warnings.warn(f"adamw name pattern(s) {sorted(unmatched)} matched no parameter name, so they route nothing "
                      "to AdamW", RoutingWarning, stacklevel=3)
    return out


def _check_adamw_settings(settings: dict) -> None:
    """The AdamW part's settings, under the names the caller used (a bad ``adamw_lr`` names ``adamw_lr``,
    not the group's ``lr`` it becomes)."""
    non_negative(settings["lr"], None, "adamw_lr")
    check_betas(settings["betas"], None, "adamw_betas")
    positive(settings["eps"], None, "adamw_eps")
    non_negative(settings["weight_decay"], None, "adamw_weight_decay")


@register_optimizer("muon", summary="Newton-Schulz orthogonalized momentum for hidden matrices, AdamW for the rest",
                    reference="Jordan et al., Muon: An optimizer for hidden layers in neural networks, 2024, "
                              "https://github.com/KellerJordan/Muon; Kovalev, arXiv:2503.12645")
class Muon(Optimizer):
    """Muon with an auxiliary AdamW inside the same optimizer.

    Args:
        params: tensors, ``(name, tensor)`` pairs (``model.named_parameters()``) or param groups, such as
            ``gradkit.param_groups(model)`` (which sends only hidden matrices to Muon, decided by module
            type: embeddings and the output head go to AdamW even without name patterns).
            Matrices (ndim >= 2; conv weights are flattened to ``out x rest``) get Muon; vectors,
            scalars and whatever ``adamw`` selects get AdamW. A group with an explicit ``use_muon``
            flag is taken as given (as the official ``MuonWithAuxAdam``).
        lr, momentum, nesterov, weight_decay: Muon's (0.02, 0.95, True, 0: the official defaults).
        adamw: what else goes to AdamW, e.g. embeddings and the output head: a name pattern
            (``fnmatch``, e.g. ``"embed*"``), a list of them, or a predicate ``(name, param) -> bool``.
            Patterns need named params (``ValueError`` otherwise); one matching no name is warned about.
        adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay: the AdamW groups' settings
            (3e-4, (0.9, 0.95), 1e-10, 0: the official defaults).
        ns_steps, ns_coefficients, ns_dtype, shape_scale: see ``scale_by_trust_region``.

    Example:
        >>> import torch, gradkit
        >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 10))
        >>> opt = gradkit.optim.Muon(model.named_parameters(), adamw=["0.*", "2.*"])
        >>> [(g["use_muon"], len(g["params"])) for g in opt.param_groups]
        [(True, 1), (False, 4)]
    """

    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.0, *, adamw=None,
                 adamw_lr=3e-4, adamw_betas=(0.9, 0.95), adamw_eps=1e-10, adamw_weight_decay=0.0, ns_steps=5,
                 ns_coefficients=MUON_COEFFICIENTS, ns_dtype="auto", shape_scale="muon", maximize=False,
                 nonfinite="raise", state_dtype=None):
        params = list(params) if not isinstance(params, torch.Tensor) else params
        groups = split_muon_groups(params, adamw, adamw_lr=adamw_lr, adamw_betas=adamw_betas, adamw_eps=adamw_eps,
                                   adamw_weight_decay=adamw_weight_decay)
        check_groups_kept("Muon", "use_muon", "gradkit.optim.muon.split_muon_groups(model.parameters())", params,
                          groups)
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, ns_steps=ns_steps,
                        ns_coefficients=ns_coefficients, ns_dtype=ns_dtype, shape_scale=shape_scale,
                        betas=adamw_betas, eps=adamw_eps, maximize=maximize, use_muon=True)
        transform = chain(
            flip_sign(hp("maximize")),
            select_by_group(
                hp("use_muon"),
                on=scale_by_trust_region("spectral", hp("momentum"), hp("nesterov"), hp("ns_steps"),
                                         hp("ns_coefficients"), hp("ns_dtype"), hp("shape_scale")),
                off=scale_by_adam(hp("betas"), hp("eps"), False),
            ),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(groups, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
