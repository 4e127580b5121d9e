"""Cache blocking for elementwise steps on CPU.

A step written as a sequence of ``torch._foreach_*`` ops sweeps main memory once per op, and every
out-of-place op allocates a parameter-sized temporary (on CPU a fresh allocation of that size costs
page faults, several passes' worth). Running the same sequence over blocks of a few hundred thousand
elements keeps the moments, the gradient and the block-sized temporaries in cache, so main memory sees
roughly one read of each input and one write of each output, and the only parameter-sized allocation
left is the update itself. (On a 2-core EPYC the saved allocations are most of the gain; an op over a
cached block costs about as much per element as a streaming one, so the op count still matters.)

Elementwise ops give the same result per element however the tensors are split, so a transform
written against :func:`blocks` computes the same numbers on every path. On other devices (where one
foreach launch over whole tensors is what is fast), for non-contiguous tensors and for steps that fit
in one block there is one block of whole tensors, and the transforms leave their usual pending quotient.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

from torch import Tensor

# 2^18 fp32 elements = 1 MiB per tensor; a step holding ~10 such pieces stays within a shared L3.
BLOCK_ELEMENTS = 1 << 18


def is_blocked(*lists: Sequence[Tensor]) -> bool:
    """True when :func:`blocks` splits these tensors into several blocks: on CPU, all contiguous, more
    than :data:`BLOCK_ELEMENTS` elements per list (a smaller step already runs in cache)."""
    return _splits(lists, BLOCK_ELEMENTS)


def _splits(lists: Sequence[Sequence[Tensor]], size: int) -> bool:
    return (sum(t.numel() for t in lists[0]) > size
            and all(t.device.type == "cpu" and t.is_contiguous() for lst in lists for t in lst))


def blocks(*lists: Sequence[Tensor], size: int | None = None) -> Iterator[tuple[list[int], list[list[Tensor]]]]:
    """Yield ``(owners, pieces)``: ``pieces[k]`` are aligned pieces of ``lists[k]`` covering at most
    ``size`` elements together (whole tensors where they fit, 1-D slices of larger ones), ``owners[j]``
    the index of the tensor piece ``j`` comes from.

    All lists hold tensors of equal sizes index by index. Without blocking (see :func:`is_blocked`)
    the only block is the whole lists, ``owners = range(n)``.
    """
    n = len(lists[0])
    size = BLOCK_ELEMENTS if size is None else size
    if not _splits(lists, size):
        yield list(range(n)), [list(lst) for lst in lists]
        return
    owners: list[int] = []
    pieces: list[list[Tensor]] = [[] for _ in lists]
    filled = 0
    for i in range(n):
        numel = lists[0][i].numel()
        if numel == 0:
            continue
        if filled + numel <= size:  # the whole tensor fits: no views to make
            owners.append(i)
            for out, lst in zip(pieces, lists):
                out.append(lst[i])
            filled += numel
        else:
            flats, start = [lst[i].view(-1) for lst in lists], 0
            while start < numel:
                take = min(numel - start, size - filled)
                owners.append(i)
                for out, flat in zip(pieces, flats):
                    out.append(flat.narrow(0, start, take))
                filled += take
                start += take
                if filled == size:
                    yield owners, pieces
                    owners, pieces, filled = [], [[] for _ in lists], 0
            continue
        if filled == size:
            yield owners, pieces
            owners, pieces, filled = [], [[] for _ in lists], 0
    if owners:
        yield owners, pieces


def pick(values, owners: list[int]):
    """A per-tensor scalar list restricted to a block's pieces (a single scalar passes through)."""
    return values if not isinstance(values, list) else type(values)(values[i] for i in owners)


def blocked_quotient(ctx, terms: Callable[..., tuple[list[Tensor], list[Tensor]]], *lists: Sequence[Tensor],
                     owned: bool = False) -> list[Tensor]:
    """The update ``numerator / denominator`` of an elementwise transform, computed where it is cheapest.

    ``terms(owners, *pieces, out=None)`` updates the state pieces in place and returns ``(numerator,
    denominator)`` lists for those pieces (the numerator may be written into ``out`` when given) (see :func:`blocks`; use :func:`pick` for per-tensor scalars). Blocked (CPU,
    unfused): the quotient of each block is written into one fresh tensor per param, which is returned as
    owned plain updates. Otherwise (and always on the fused step, which the compiler fuses anyway) the
    quotient is left pending (``ctx.quotient``, the numerator owned when ``owned``) for the optimizer's
    addcdiv. The math in ``terms`` is the same on every path.
    """
    if ctx.traced or not is_blocked(*lists):
        return ctx.quotient(*terms(list(range(len(lists[0]))), *lists), owned=owned)
    ops = ctx.ops
    out = ops.empty_like(lists[0])
    for owners, pieces in blocks(*lists, out):
        numerator, denominator = terms(owners, *pieces[:-1], out=pieces[-1])
        if numerator is not pieces[-1]:
            ops.copy_(pieces[-1], numerator)
        ops.div_(pieces[-1], denominator)
    return ctx.fresh(out)
