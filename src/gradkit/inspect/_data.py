"""Batches, batch-norm statistics and the loss as a function of a flat parameter vector.

Everything in ``gradkit.inspect`` evaluates the *training* loss of a model on some data without
disturbing training: running statistics of batch-norm layers are never updated, parameters are
never written, and ``.grad`` is never touched.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Callable, Union

import torch
from torch import nn

from .. import distributed

Batch = Sequence  # (inputs, targets)
Data = Union[Batch, Iterable]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def is_single_batch(data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor)


def batches(data: Data) -> list[tuple[torch.Tensor, torch.Tensor]] | Iterable:
    """``data`` as something that can be iterated over more than once, yielding (inputs, targets)."""
    if is_single_batch(data):
        return [tuple(data)]
    if not isinstance(data, Iterable):
        raise TypeError(f"data must be one batch (inputs, targets) or an iterable of such batches, got {type(data).__name__}")
    if isinstance(data, Iterator):
        # Lanczos and Hutchinson pass over the data once per Hessian-vector product.
        raise TypeError("data must be re-iterable (a list of batches or a DataLoader), not a one-shot iterator or generator")
    return data


def batch_size(inputs) -> int:
    if isinstance(inputs, torch.Tensor):
        if inputs.ndim == 0:
            raise ValueError("inputs must have a leading batch dimension, got a 0-d tensor")
        return int(inputs.shape[0])
    raise TypeError(f"inputs must be a tensor with a leading batch dimension, got {type(inputs).__name__}")


@contextlib.contextmanager
def frozen_norm_statistics(model: nn.Module):
    """Batch-norm layers in training mode keep normalising by batch statistics, but stop updating
    their running averages, so that inspection leaves the model exactly as it found it."""
    changed = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.training and module.track_running_stats:
            module.track_running_stats = False
            changed.append(module)
    try:
        yield
    finally:
        for module in changed:
            module.track_running_stats = True


def training_norm_layers(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._NormBase) and m.training]


def select_parameters(model: nn.Module, names: Iterable[str] | None) -> list[tuple[str, nn.Parameter]]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if names is None:
        if not named:
            raise ValueError("model has no parameters with requires_grad=True")
        return named
    names = list(names)
    lookup = dict(named)
    unknown = [n for n in names if n not in lookup]
    if unknown or not names:
        raise ValueError(f"params must name trainable parameters of the model; unknown: {unknown}, allowed: {sorted(lookup)}")
    return [(n, lookup[n]) for n in names]


def sum_over_ranks(vector: torch.Tensor, scalars: Sequence[float], group) -> tuple[torch.Tensor, list[float]]:
    """``vector`` and a few ``scalars`` (sums and counts) added up over the ranks of ``group``.

    One all-reduce carries both; without a group they come back unchanged. Each rank passes sums
    over its own examples (not means), so unequal shares add up exactly.
    """
    if group is None:
        return vector, [float(s) for s in scalars]
    # At least float32, so that example counts stay exact in a half-precision model.
    dtype = torch.promote_types(vector.dtype, torch.float32)
    tail = torch.tensor([float(s) for s in scalars], dtype=dtype, device=vector.device)
    both = distributed.all_reduce_sum(torch.cat([vector.reshape(-1).to(dtype), tail]), group)
    return both[: vector.numel()].view_as(vector).to(vector.dtype), both[vector.numel():].tolist()
