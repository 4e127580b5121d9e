"""Cache blocking for elementwise steps on CPU.

A step written as a sequence of ``torch._foreach_*`` ops sweeps main memory once per op, and every
out-of-place op allocates a parameter-sized temporary (on CPU a fresh allocation of that size costs
page faults, several passes' worth). Running the same sequence over blocks of a few hundred thousand
elements keeps the moments, the gradient and the (block-sized, reused) temporaries in cache, so main
memory sees roughly one read of each input and one write of each output.

Elementwise ops give the same result per element however the tensors are split, so a transform
written against :func:`blocks` computes the same numbers on every path. On other devices (where one
foreach launch over whole tensors is what is fast) and for non-contiguous tensors there is one block
of whole tensors.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

# 2^18 fp32 elements = 1 MiB per tensor; a step holding ~10 such pieces stays within a shared L3.
BLOCK_ELEMENTS = 1 << 18


def is_blocked(*lists: Sequence[Tensor]) -> bool:
    """True when :func:`blocks` splits these tensors (CPU, contiguous), i.e. the step runs block by block."""
    return all(t.device.type == "cpu" and t.is_contiguous() for lst in lists for t in lst)


def blocks(*lists: Sequence[Tensor], size: int | None = None) -> Iterator[tuple[list[int], list[list[Tensor]]]]:
    """Yield ``(owners, pieces)``: ``pieces[k]`` are aligned 1-D views into ``lists[k]`` covering at most
    ``size`` elements together, ``owners[j]`` the index of the tensor piece ``j`` is cut from.

    All lists hold tensors of equal sizes index by index. Without blocking (see :func:`is_blocked`)
    the only block is the whole lists, ``owners = range(n)``.
    """
    n = len(lists[0])
    size = BLOCK_ELEMENTS if size is None else size
    if not is_blocked(*lists):
        yield list(range(n)), [list(lst) for lst in lists]
        return
    flats = [[t.view(-1) for t in lst] for lst in lists]
    owners: list[int] = []
    pieces: list[list[Tensor]] = [[] for _ in lists]
    filled = 0
    for i in range(n):
        numel, start = flats[0][i].numel(), 0
        while start < numel:
            take = min(numel - start, size - filled)
            owners.append(i)
            for out, flat in zip(pieces, flats):
                out.append(flat[i].narrow(0, start, take))
            filled += take
            start += take
            if filled == size:
                yield owners, pieces
                owners, pieces, filled = [], [[] for _ in lists], 0
    if owners:
        yield owners, pieces


def pick(values: float | list[float], owners: list[int]) -> float | list[float]:
    """A per-tensor scalar list restricted to a block's pieces (a single float passes through)."""
    return values if not isinstance(values, list) else [values[i] for i in owners]


def blocked_quotient(ctx, terms: Callable[..., tuple[list[Tensor], list[Tensor]]], *lists: Sequence[Tensor]) -> list[Tensor]:
    """The update ``numerator / denominator`` of an elementwise transform, computed where it is cheapest.

    ``terms(owners, *pieces)`` updates the state pieces in place and returns ``(numerator, denominator)``
    lists for those pieces (see :func:`blocks`; use :func:`pick` for per-tensor scalars). Blocked (CPU):
    the quotient of each block is written into one fresh tensor per param, which is returned as owned
    plain updates. Otherwise the quotient is left pending (``ctx.quotient``) for the optimizer's addcdiv.
    """
    if not is_blocked(*lists):
        return ctx.quotient(*terms(list(range(len(lists[0]))), *lists))
    out = [torch.empty_like(t) for t in lists[0]]
    for owners, pieces in blocks(*lists, out):
        numerator, denominator = terms(owners, *pieces[:-1])
        torch._foreach_copy_(pieces[-1], numerator)
        torch._foreach_div_(pieces[-1], denominator)
    return ctx.fresh(out)
