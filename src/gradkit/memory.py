"""Predict an optimizer's state bytes before training: ``gradkit.memory.estimate(model, spec)``.

The optimizer is built on ``meta`` copies of the parameters (no memory is allocated) and its transforms'
``init`` is run there, which gives the exact shapes and dtypes of every state tensor a first step creates
(the optimizer's step counters are Python ints, no tensor memory). The result is counted by the meta
optimizer's own ``state_bytes``, so the breakdowns are the same as on the real one. State that a transform only creates during an
update is reported by an optional ``estimate_state(params, ctx)`` method on the transform, returning
``{key: [tensor or None per param]}`` of meta tensors (the blockwise projector uses it for the block that
the first step makes state-full). The numbers assume every parameter receives a gradient.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from gradkit.core.accounting import BY
from gradkit.core.context import StepContext
from gradkit.spec import build_optimizer

__all__ = ["estimate"]


def _meta_params(model) -> list:
    if isinstance(model, nn.Module):
        items = list(model.named_parameters())
    else:
        items = list(model)
    out = []
    for item in items:
        named = isinstance(item, tuple)
        name, p = item if named else (None, item)
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"model must be an nn.Module or an iterable of tensors / (name, tensor) pairs, "
                            f"got an item of type {type(p).__name__}")
        meta = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        out.append((name, meta) if named else meta)
    return out


def estimate(model, optimizer_spec: str | tuple | dict | Callable[..., Any], *, by: str | None = None, **kwargs):
    """Bytes of optimizer state after the first step, predicted without allocating anything.

    Args:
        model: an ``nn.Module`` (its named parameters are used) or an iterable of parameters or
            (name, parameter) pairs.
        optimizer_spec: an optimizer spec in the grammar of ``gradkit bench --opt`` (``"frugal:density=0.25"``,
            see :mod:`gradkit.spec`), ``(name, kwargs)``, ``{"name": ..., **kwargs}`` or a factory
            ``params -> optimizer``. Extra keyword arguments override the spec's arguments.
        by: ``None`` (total), ``"param"``, ``"key"`` or ``"kind"``, the same breakdowns as
            ``optimizer.state_bytes(by=...)``.

    Returns:
        An int (bytes), or a dict of bytes keyed by parameter name or index, state key or state kind.

    AdamW keeps two fp32 moments per parameter entry; FRUGAL at density 0.25 keeps them for a quarter:

    >>> from torch import nn
    >>> model = nn.Linear(64, 64, bias=False)
    >>> estimate(model, "adamw"), 2 * 4 * 64 * 64
    (32768, 32768)
    >>> estimate(model, "frugal:density=0.25") < estimate(model, "adamw")
    True
    """
    if by not in BY:
        raise ValueError(f"by must be one of {BY}, got {by!r}")
    opt = build_optimizer(optimizer_spec, _meta_params(model), **kwargs)
    transform = getattr(opt, "transform", None)
    if transform is None:
        raise TypeError(f"estimate needs a gradkit optimizer (with a transform chain), got {type(opt).__name__}")
    # fill the meta optimizer's state as a first step would, then count it with the optimizer's own accounting
    for group in opt.param_groups:
        params = [p for p in group["params"] if p.requires_grad]
        metas = [torch.empty_like(p, device="meta", dtype=opt.compute_dtype(p)) for p in params]
        ctx = StepContext(group, [0] * len(metas), {})
        state = transform.init(metas, ctx)
        for t, ns in zip(transform.transforms, transform.namespaces):
            extra = getattr(t, "estimate_state", None)
            if extra is not None:
                ctx.namespace = ns
                state.update({f"{ns}.{key}": values for key, values in extra(metas, ctx).items()})
        storage = getattr(opt, "storage", None)
        for j, p in enumerate(params):
            entry = {k: v[j] for k, v in state.items() if v[j] is not None}
            if storage is not None:  # compressed state: codes, scales and shapes (core/storage.py)
                entry = storage.layout(entry, transform.kind_of)
            opt.state[p] = {"step": 1, **entry}
    return opt.state_bytes(by=by)
