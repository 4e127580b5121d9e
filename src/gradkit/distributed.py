"""Small helpers for data-parallel use of gradkit: process groups, reductions over ranks, sharded tensors.

``gradkit.combine.backward`` and the estimators of ``gradkit.inspect`` take a ``process_group``
argument. With a group they compute the result for the data of *all* its ranks (each rank passes its
own share of the batch), so every rank gets the same, full-batch answer; without one they use only
the data they are given and never communicate. ``LOCAL`` says "this process alone" explicitly where
an initialised multi-rank group would otherwise make the omission ambiguous (``combine.backward``
refuses to guess, because a rank-local combined gradient makes data-parallel replicas drift apart).

Every collective here is issued by every rank of the group in the same order, so a function that
calls them must be called on all ranks of the group (as ``loss.backward()`` is under DDP).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


__all__ = [
    "LOCAL",
    "is_dtensor",
    "is_initialized",
    "resolve_group",
    "world_size",
    "all_reduce_sum",
    "broadcast_from_first",
    "check_same_on_ranks",
    "rank_slice",
    "RankOrderReduceScatter",
]


class _Local:
    """The explicit "no process group": compute from this process's data only."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "gradkit.distributed.LOCAL"

    def __reduce__(self):
        return (_Local, ())


LOCAL = _Local()


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_dtensor(tensor: Any) -> bool:
    """Whether ``tensor`` is a ``torch.distributed.tensor.DTensor`` (e.g. a parameter sharded by FSDP2)."""
    if not dist.is_available():
        return False
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch < 2.5 keeps it under the private name
        from torch.distributed._tensor import DTensor
    return isinstance(tensor, DTensor)


def resolve_group(process_group: Any, *, argument: str = "process_group"):
    """``None`` for no communication (``None`` or ``LOCAL`` given), else the checked process group.

    A process group needs ``torch.distributed`` to be initialised; this process must be one of its
    ranks.
    """
    if process_group is None or process_group is LOCAL:
        return None
    if not is_initialized():
        raise ValueError(
            f"{argument} was given but torch.distributed is not initialised; call "
            f"torch.distributed.init_process_group first, or pass {argument}=None for this process's data only"
        )
    if not isinstance(process_group, dist.ProcessGroup):
        raise TypeError(
            f"{argument} must be a torch.distributed.ProcessGroup (e.g. torch.distributed.group.WORLD), "
            f"gradkit.distributed.LOCAL or None, got {type(process_group).__name__}"
        )
    if dist.get_rank(process_group) < 0:
        raise ValueError(f"{argument}: this process (global rank {dist.get_rank()}) is not a member of the group")
    return process_group


def world_size(group) -> int:
    """Number of ranks in ``group`` (1 for ``None``: no communication)."""
    return 1 if group is None else dist.get_world_size(group)


def all_reduce_sum(tensor: Tensor, group) -> Tensor:
    """Sum ``tensor`` over the ranks of ``group`` in place (nothing without a group); returns it."""
    if group is not None and dist.get_world_size(group) > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor


def broadcast_from_first(tensor: Tensor, group) -> Tensor:
    """Overwrite ``tensor`` in place with the copy held by the group's first rank; returns it.

    Random probe vectors go through this, so every rank works with the same probe whatever its
    random number generator's state.
    """
    if group is not None and dist.get_world_size(group) > 1:
        dist.broadcast(tensor, src=dist.get_global_rank(group, 0), group=group)
    return tensor


def check_same_on_ranks(tensor: Tensor, group, what: str, *, rtol: float = 1e-6) -> None:
    """Raise on every rank if ``tensor`` differs between the ranks of ``group`` (beyond ``rtol``).

    Compares two checksums (the sum and the sum of magnitudes, in float64) with one all-reduce of
    four numbers, so it is cheap next to the gradients themselves.
    """
    if group is None or dist.get_world_size(group) == 1:
        return
    flat = tensor.detach().reshape(-1).to(torch.float64)
    sums = torch.stack([flat.sum(), flat.abs().sum()])
    both = torch.cat([sums, -sums]).to(flat.device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group)
    if not bool(torch.isfinite(both).all()):
        return  # non-finite values are the optimizer's to handle; every rank sees the same reduced checksums
    high, low = both[:2], -both[2:]
    spread = float((high - low).max())
    if not spread <= rtol * max(float(high[1]), 1e-300):
        raise RuntimeError(
            f"{what} differs between the ranks of the process group (checksums {low.tolist()} to {high.tolist()}); "
            "every rank must compute it identically"
        )


def rank_slice(total: int, rank: int, num_ranks: int) -> slice:
    """The contiguous share of ``total`` items that rank ``rank`` of ``num_ranks`` takes.

    Shares differ in size by at most one (the first ``total % num_ranks`` ranks take one more), and
    concatenated in rank order they are ``range(total)``, so results weighted by share size add up to
    the full-batch result.
    """
    if not isinstance(num_ranks, int) or num_ranks < 1:
        raise ValueError(f"num_ranks must be a positive integer, got {num_ranks!r}")
    if not isinstance(rank, int) or not 0 <= rank < num_ranks:
        raise ValueError(f"rank must be an integer in [0, {num_ranks}), got {rank!r}")
    if not isinstance(total, int) or total < 0:
        raise ValueError(f"total must be a non-negative integer, got {total!r}")
    base, extra = divmod(total, num_ranks)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


class RankOrderReduceScatter:
    """A reduce-scatter for FSDP2 that sums the ranks' gradients in rank order, ``((g_0 + g_1) + g_2) + ...``.

    Install it with ``module.set_custom_reduce_scatter(RankOrderReduceScatter())`` on each ``fully_shard``-ed
    module (torch versions that have that method, e.g. 2.13). One ``all_to_all`` moves each rank's chunk of
    every rank's gradient to it, the bytes a ring reduce-scatter moves, and the rank sums them in rank order.
    A backend's own reduce-scatter may sum in an order of its choosing (gloo's four-rank one sums pieces of a
    chunk in orders that depend on the buffer's size), which one process cannot reproduce; in rank order, a
    single process that accumulates the ranks' micro-batch gradients one after another sees the same
    gradient bits. That matters for methods
    that amplify rounding (SOAP's and Shampoo's eigenbases, D-Adapt's estimate: a 1e-7 difference in the
    gradient grows to 1e-3 or more), whose runs can then be compared with one process exactly.

    ``ReduceOp.SUM`` and ``ReduceOp.AVG`` (the sum divided by the world size) are supported.
    """

    def allocate(self, size, *, dtype: torch.dtype, device: torch.device) -> Tensor:
        return torch.empty(*size, dtype=dtype, device=device)

    def __call__(self, output_tensor: Tensor, input_tensor: Tensor, group, op, async_op: bool = False):
        if op not in (dist.ReduceOp.SUM, dist.ReduceOp.AVG):
            raise ValueError(f"RankOrderReduceScatter: op must be ReduceOp.SUM or ReduceOp.AVG, got {op!r}")
        ranks = dist.get_world_size(group)
        received = torch.empty((ranks, output_tensor.numel()), dtype=input_tensor.dtype, device=input_tensor.device)
        dist.all_to_all_single(received, input_tensor.reshape(ranks, -1), group=group)
        total = received[0].clone()
        for part in received[1:]:  # one add per rank, in rank order
            total.add_(part)
        if op == dist.ReduceOp.AVG:
            total.div_(ranks)
        output_tensor.copy_(total.reshape(output_tensor.shape))
        return None
