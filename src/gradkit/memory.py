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
from gradkit.registry import get_optimizer

__all__ = ["estimate", "build_optimizer"]


def build_optimizer(params, optimizer_spec) -> torch.optim.Optimizer:
    """Build from a spec: a registry name, ``(name, kwargs)``, ``{"name": ..., **kwargs}`` or a factory."""
    if isinstance(optimizer_spec, str):
        return get_optimizer(optimizer_spec)(params)
    if isinstance(optimizer_spec, tuple) and len(optimizer_spec) == 2 and isinstance(optimizer_spec[0], str):
        return get_optimizer(optimizer_spec[0])(params, **dict(optimizer_spec[1]))
    if isinstance(optimizer_spec, dict) and isinstance(optimizer_spec.get("name"), str):
        kwargs = {k: v for k, v in optimizer_spec.items() if k != "name"}
        return get_optimizer(optimizer_spec["name"])(params, **kwargs)
    if callable(optimizer_spec):
        return optimizer_spec(params)
    raise TypeError("optimizer_spec must be a registry name, (name, kwargs), {'name': ..., **kwargs} or a factory "
                    f"params -> optimizer, got {type(optimizer_spec).__name__}")


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
        optimizer_spec: a registry name (``"frugal"``), ``(name, kwargs)``, ``{"name": ..., **kwargs}`` or a
            factory ``params -> optimizer``. Extra keyword arguments are passed to a registry name.
        by: ``None`` (total), ``"param"``, ``"key"`` or ``"kind"``, the same breakdowns as
            ``optimizer.state_bytes(by=...)``.
    """
    if by not in BY:
        raise ValueError(f"by must be one of {BY}, got {by!r}")
    if kwargs:
        if not isinstance(optimizer_spec, str):
            raise TypeError("keyword arguments are only taken with a registry name as optimizer_spec")
        optimizer_spec = (optimizer_spec, kwargs)
    opt = build_optimizer(_meta_params(model), optimizer_spec)
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
        for j, p in enumerate(params):
            opt.state[p] = {"step": 1, **{k: v[j] for k, v in state.items() if v[j] is not None}}
    return opt.state_bytes(by=by)
