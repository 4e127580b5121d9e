"""Batched per-tensor reductions over a group's tensors without a Python loop per tensor.

Small tensors of one view shape are stacked (copied) so that one batched reduction serves them all;
large ones are reduced in place through views, where launching per tensor costs less than copying.
Stacks hold at most ``CHUNK_ELEMENTS`` elements, which bounds the transient memory. Used by the
radial projection (AdamP/SGDP) and the orthogonal-gradient transform.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

STACK_BELOW = 1 << 16
CHUNK_ELEMENTS = 1 << 22


def rows_view(shape: torch.Size) -> tuple[int, int]:
    """A tensor as (first dim, the rest): rows for per-row statistics."""
    return shape[0], math.prod(shape[1:])


def flat_view(shape: torch.Size) -> tuple[int, int]:
    """A tensor as one row."""
    return 1, math.prod(shape)


def chunks(tensors: Sequence[Tensor], indices: Sequence[int], view: Callable = rows_view,
           shapes: Sequence[torch.Size] | None = None) -> Iterator[tuple[list[int], int, int]]:
    """``indices`` grouped by (device, dtype, view shape), in chunks of bounded size: (indices, rows, cols).

    ``shapes`` (the whole tensors' shapes when ``tensors`` are local shards of whole rows) decides the
    grouping, so that every rank forms the same chunks; ``rows`` is then the local count."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i in indices:
        p = tensors[i]
        groups[(p.device, p.dtype, *view(p.shape if shapes is None else shapes[i]))].append(i)
    for (_, _, rows, cols), members in groups.items():
        per_chunk = 1 if rows * cols >= STACK_BELOW else max(1, CHUNK_ELEMENTS // max(rows * cols, 1))
        local_rows = view(tensors[members[0]].shape)[0]
        for start in range(0, len(members), per_chunk):
            yield members[start:start + per_chunk], local_rows, cols


def stack(tensors: Sequence[Tensor], rows: int, cols: int) -> Tensor:
    """``(len(tensors), rows, cols)``: a view of a single tensor, else a copy."""
    if len(tensors) == 1:
        return tensors[0].reshape(1, rows, cols)
    return torch.stack([t.reshape(rows, cols) for t in tensors])
