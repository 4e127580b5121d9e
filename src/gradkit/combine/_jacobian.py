"""Per-objective gradients as one Jacobian matrix, and the way back into ``.grad``.

The Jacobian has one row per objective and one column per entry of the shared parameters, in
parameter order. Aggregators work on this flat matrix, so they cannot depend on how the
parameters are split into tensors.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["jacobian", "check_params", "check_losses", "flatten_gradients", "accumulate_into_grad"]


def check_params(params: Iterable[Tensor]) -> list[Tensor]:
    if isinstance(params, Tensor):
        params = [params]
    try:
        params = list(params)
    except TypeError:
        raise TypeError(f"params must be an iterable of tensors, got {type(params).__name__}") from None
    if not params:
        raise ValueError("params must hold at least one tensor, got an empty sequence")
    seen = set()
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"params[{i}] must be a torch.Tensor, got {type(p).__name__}")
        if not p.requires_grad:
            raise ValueError(f"params[{i}] (shape {tuple(p.shape)}) does not require grad")
        if id(p) in seen:
            raise ValueError(f"params[{i}] appears more than once in params")
        seen.add(id(p))
    first = params[0]
    for i, p in enumerate(params):
        if p.dtype != first.dtype or p.device != first.device:
            raise ValueError(
                f"params must share one dtype and device; params[0] is {first.dtype} on {first.device}, "
                f"params[{i}] is {p.dtype} on {p.device}"
            )
    return params


def check_losses(losses: Sequence[Tensor] | Tensor) -> list[Tensor]:
    if isinstance(losses, Tensor):
        if losses.ndim != 1:
            raise ValueError(f"losses as one tensor must be 1-D (one entry per objective), got shape {tuple(losses.shape)}")
        losses = list(losses.unbind())
    else:
        try:
            losses = list(losses)
        except TypeError:
            raise TypeError(f"losses must be a sequence of scalar tensors or a 1-D tensor, got {type(losses).__name__}") from None
    if not losses:
        raise ValueError("losses must hold at least one loss, got an empty sequence")
    for i, loss in enumerate(losses):
        if not isinstance(loss, Tensor):
            raise TypeError(f"losses[{i}] must be a torch.Tensor, got {type(loss).__name__}")
        if loss.numel() != 1:
            raise ValueError(f"losses[{i}] must be a scalar, got shape {tuple(loss.shape)}")
        if not loss.requires_grad:
            raise ValueError(f"losses[{i}] does not require grad, so it has no gradient to combine")
    return losses


def jacobian(
    losses: Sequence[Tensor] | Tensor,
    params: Iterable[Tensor],
    *,
    retain_graph: bool = False,
    batched: bool = False,
) -> Tensor:
    """The ``(num_losses, num_param_entries)`` matrix of per-loss gradients.

    ``batched=False`` runs one backward pass per loss. ``batched=True`` runs a single vectorised
    backward (``torch.autograd.grad(..., is_grads_batched=True)``), which is faster when the losses
    share most of their graph, but needs every operation in the graph to have a batching rule. A
    parameter that a loss does not reach gets a zero gradient.

    Example:
        >>> import torch
        >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> jacobian([w[0] ** 2, w[1] - w[0]], [w])
        tensor([[ 2.,  0.],
                [-1.,  1.]])
    """
    losses = check_losses(losses)
    params = check_params(params)
    m = len(losses)
    sizes = [p.numel() for p in params]
    first = params[0]
    if batched:
        stacked = torch.stack([loss.reshape(()) for loss in losses])
        eye = torch.eye(m, dtype=stacked.dtype, device=stacked.device)
        grads = torch.autograd.grad(
            stacked, params, grad_outputs=eye, is_grads_batched=True,
            retain_graph=retain_graph, allow_unused=True, materialize_grads=True,
        )
        return torch.cat([g.reshape(m, -1).to(first.dtype) for g in grads], dim=1)
    out = torch.empty(m, sum(sizes), dtype=first.dtype, device=first.device)
    for i, loss in enumerate(losses):
        grads = torch.autograd.grad(
            loss.reshape(()), params, retain_graph=retain_graph or i < m - 1,
            allow_unused=True, materialize_grads=True,
        )
        torch._foreach_copy_(list(out[i].split(sizes)), [g.reshape(-1) for g in grads])
    return out


def flatten_gradients(gradients: Sequence[Sequence[Tensor]] | Tensor, params: Sequence[Tensor]) -> Tensor:
    """Already computed gradients (per objective, a list shaped like ``params``) as a Jacobian."""
    n = sum(p.numel() for p in params)
    if isinstance(gradients, Tensor):
        if gradients.ndim != 2 or gradients.shape[1] != n or gradients.shape[0] == 0:
            raise ValueError(f"gradients as one tensor must have shape (num_objectives, {n}), got {tuple(gradients.shape)}")
        return gradients.detach()
    rows = []
    for i, grads in enumerate(gradients):
        grads = list(grads)
        if len(grads) != len(params):
            raise ValueError(f"gradients[{i}] must hold one tensor per parameter ({len(params)}), got {len(grads)}")
        for j, (g, p) in enumerate(zip(grads, params)):
            if not isinstance(g, Tensor) or g.shape != p.shape:
                got = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
                raise ValueError(f"gradients[{i}][{j}] must be a tensor of shape {tuple(p.shape)}, got {got}")
        rows.append(torch.cat([g.detach().reshape(-1).to(p.dtype) for g, p in zip(grads, params)]))
    if not rows:
        raise ValueError("gradients must hold at least one objective's gradients, got none")
    return torch.stack(rows)


@torch.no_grad()
def accumulate_into_grad(update: Tensor, params: Sequence[Tensor]) -> None:
    """Add the flat ``update`` into each parameter's ``.grad``, as ``loss.backward()`` would."""
    pieces = [piece.view_as(p) for piece, p in zip(update.split([p.numel() for p in params]), params)]
    existing = [(p, piece) for p, piece in zip(params, pieces) if p.grad is not None]
    for p, piece in zip(params, pieces):
        if p.grad is None:
            p.grad = piece.clone(memory_format=torch.contiguous_format)
    if existing:
        torch._foreach_add_([p.grad for p, _ in existing], [piece for _, piece in existing])
