"""Per-example gradients with ``torch.func``: ``vmap`` over examples of ``grad`` of one example's loss,
in chunks so that only ``chunk_size`` rows of the ``(m, P)`` gradient matrix exist at a time.

The model is called functionally with its current parameters and buffers, so nothing of the module
(parameters, ``.grad``, batch-norm statistics) is written. Batch norm in training mode cannot see a batch
inside ``vmap``; put such models in eval mode first.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import nn

__all__ = ["per_example_gradients", "check_examples"]


def check_examples(inputs, targets, name: str = "inputs") -> None:
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1:
        raise TypeError(f"{name} must be a tensor of shape (m, ...), got {type(inputs).__name__}")
    if not isinstance(targets, torch.Tensor) or targets.shape[:1] != inputs.shape[:1]:
        raise ValueError(f"targets must be a tensor with one entry per input ({inputs.shape[0]}), "
                         f"got {getattr(targets, 'shape', type(targets).__name__)}")
    if inputs.shape[0] < 1:
        raise ValueError("inputs must hold at least one example")


def per_example_gradients(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_size: int = 64,
    names: list[str] | None = None,
) -> Iterator[torch.Tensor]:
    """Yield ``(k, P)`` blocks of flattened per-example gradients, ``k <= chunk_size``, in input order.

    ``loss_fn(outputs, targets)`` is called on a batch of one; ``names`` restricts the gradient to those
    parameters (default: every parameter that requires grad), concatenated in ``named_parameters`` order.
    """
    from torch.func import functional_call, grad, vmap

    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    check_examples(inputs, targets)
    every = {n: p for n, p in model.named_parameters() if p.requires_grad}
    chosen = list(every) if names is None else [n for n in every if n in set(names)]
    if not chosen:
        raise ValueError("no parameters to differentiate: the model has none that require grad, or names matched none")
    params = {n: every[n].detach() for n in chosen}
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    buffers = {n: b for n, b in model.named_buffers()}

    def one_loss(p, x, y):
        out = functional_call(model, {**frozen, **p, **buffers}, (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    per_example = vmap(grad(one_loss), in_dims=(None, 0, 0))
    for start in range(0, inputs.shape[0], chunk_size):
        g = per_example(params, inputs[start:start + chunk_size], targets[start:start + chunk_size])
        yield torch.cat([g[n].flatten(1) for n in chosen], dim=1)
