"""Steps on sharded parameters (``torch.distributed.tensor.DTensor``, e.g. FSDP2's ``fully_shard``).

What a chain needs from a sharded parameter depends on the widest kind any of its transforms declares
(:data:`~gradkit.core.state.TRANSFORM_KINDS`, nested transforms included through ``children()``):

- **elementwise** chains run on each rank's local shards (``p.to_local()``, ``grad.to_local()`` and the
  state's local tensors) with no communication at all. Each output element depends only on the same
  element of the inputs, so this is the single-process arithmetic on a subset of the elements: the
  result is bitwise the one a single process computes. The state stays a ``DTensor`` in
  ``optimizer.state`` (so ``state_dict`` and ``torch.distributed.checkpoint`` see sharded tensors);
  ``to_local()`` returns a view of its storage, so the transforms' in-place writes land in it.
- chains whose per-tensor reductions are all ``shard_aware`` also run on the local shards: each
  reduction sums over the local elements and completes the sums with one all-reduce over the mesh
  (:class:`Shards`, ``ctx.shards``), batching the statistics of all its tensors into one collective
  per round of reduction. Params must
  be sharded (or replicated) over one 1-D mesh for this; otherwise the chain runs on the ``DTensor``\\ s.
- other chains run on the ``DTensor``\\ s themselves, where DTensor's operators communicate what each
  reduction or matrix product needs. Only transforms declared ``runs_on_dtensors = True`` (measured
  exact that way: Muon's Newton-Schulz) may do so; any other transform that is not elementwise is
  refused before anything is written, with an error naming the param and the reason
  (:func:`check_shardable`): nothing falls back silently.
"""
from __future__ import annotations

import sys
from functools import cache
from typing import Any, Iterable

import torch
from torch import Tensor

from gradkit.core.state import ELEMENTWISE, WHOLE_MATRIX, widest_kind

__all__ = ["dtensor_type", "is_sharded", "chain_reach", "runs_on_shards", "check_shardable", "local", "rewrap",
           "Shards"]


@cache
def dtensor_type():
    """The ``DTensor`` class, or ``None`` where ``torch.distributed`` is not built in."""
    if not torch.distributed.is_available():
        return None
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        return None
    return DTensor


def is_sharded(tensors: Iterable[Any]) -> bool:
    """True when any of ``tensors`` is a ``DTensor``."""
    dtensor = dtensor_type()
    return dtensor is not None and any(isinstance(t, dtensor) for t in tensors)


def walk(transform) -> Iterable:
    """``transform`` and every transform nested in it (a chain's members, a wrapper's inner transforms)."""
    yield transform
    for child in transform.children().values():
        yield from walk(child)


def chain_reach(transform) -> str:
    """The widest declared kind among ``transform`` and every transform nested in it."""
    return widest_kind(*(t.kind for t in walk(transform)))


def runs_on_shards(transform) -> bool:
    """True when the chain can run on local shards: elementwise, or every reduction in it is ``shard_aware``."""
    return all(t.kind == ELEMENTWISE or getattr(t, "shard_aware", False) for t in walk(transform))


class Shards:
    """Which of a group's tensors are shards of a larger tensor, and how to complete sums over them.

    Build with :meth:`of`, which returns ``None`` for layouts this does not cover (several meshes, a
    mesh of more than one dimension, placements other than ``Shard(0)`` / ``Replicate``). Sharded on dim 0,
    each local shard holds whole rows: statistics per row (over the last dims) need no communication.
    """

    def __init__(self, sharded: list[bool], shapes: list[torch.Size], group):
        self.sharded = sharded
        self.shapes = shapes  # of the whole tensors
        self.group = group

    @classmethod
    def of(cls, params: list[Tensor]) -> "Shards | None":
        dtensor = dtensor_type()
        meshes = {id(p.device_mesh): p.device_mesh for p in params if isinstance(p, dtensor)}
        if len(meshes) != 1:
            return None
        (mesh,) = meshes.values()
        if mesh.ndim != 1:
            return None
        sharded = []
        for p in params:
            placements = p.placements if isinstance(p, dtensor) else ()
            if any(not (q.is_shard(0) or q.is_replicate()) for q in placements):
                return None
            sharded.append(any(q.is_shard() for q in placements))
        return cls(sharded, [p.shape for p in params], mesh.get_group(0))

    def sum(self, partials: Tensor, indices: list[int] | None = None) -> Tensor:
        """``partials`` (last dim: one entry per tensor, of ``indices`` or of all) summed over the ranks
        for the sharded tensors, as they are for the others: one all-reduce."""
        import torch.distributed as dist

        mask = self.sharded if indices is None else [self.sharded[i] for i in indices]
        mask = torch.tensor(mask, device=partials.device)
        shared = torch.where(mask, partials, torch.zeros((), dtype=partials.dtype, device=partials.device))
        dist.all_reduce(shared, group=self.group)
        return torch.where(mask, shared, partials)

    def numel(self, indices: list[int] | None = None) -> list[int]:
        """The element counts of the whole tensors."""
        shapes = self.shapes if indices is None else [self.shapes[i] for i in indices]
        return [s.numel() for s in shapes]


def zero_redundancy_optimizer_building():
    """The ``ZeroRedundancyOptimizer`` whose local optimizer is being constructed, or ``None``.

    A look at the calling frames (for the code object of ``ZeroRedundancyOptimizer._init_local_optimizer``,
    not a name): torch hands its local optimizer plain param-group dicts with no mark of where they came
    from, and its own checks fail only after construction."""
    zero = sys.modules.get("torch.distributed.optim.zero_redundancy_optimizer")
    if zero is None:
        return None
    target = zero.ZeroRedundancyOptimizer._init_local_optimizer.__code__
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is target:
            return frame.f_locals.get("self")
        frame = frame.f_back
    return None


def check_zero_redundancy(transform, param_groups: list[dict]) -> None:
    """Refuse, at construction, to be ``ZeroRedundancyOptimizer``'s local optimizer on more than one rank when
    a transform's statistics span a group's params (:meth:`GradientTransform.spans_params`): each rank's local
    optimizer holds only its share of the params, so those statistics would cover the share only."""
    zero = zero_redundancy_optimizer_building()
    if zero is None or getattr(zero, "world_size", 1) <= 1:
        return
    for index, group in enumerate(param_groups):
        spanning = [t for t in walk(transform) if t.spans_params(group)]
        if spanning:
            raise ValueError(
                f"param group {index}: {type(spanning[0]).__name__} computes statistics over every param of the "
                f"group, but under ZeroRedundancyOptimizer on {zero.world_size} ranks each rank's local optimizer "
                "holds only its share of the params, so they would cover that share only and the step would not "
                "be the one-process step. Use DDP (every rank steps every param) or FSDP2 (fully_shard), where "
                "gradkit completes these statistics over the ranks")


def check_groups_kept(optimizer: str, flag: str, example: str, given: list, groups: list) -> None:
    """Refuse, before anything is built, to split param groups under ``ZeroRedundancyOptimizer``.

    An optimizer that splits each param group by parameter shape (Muon's ``use_muon``, the low-rank
    family's ``project``) has more groups than it was given; ``ZeroRedundancyOptimizer`` needs its local
    optimizer to keep the groups it passes (it copies hyperparameters and state between the two group by
    group). Groups that already carry ``flag`` are kept as given, so those work."""
    given_groups = sum(1 for g in given if isinstance(g, dict)) or 1
    if len(groups) == given_groups or zero_redundancy_optimizer_building() is None:
        return
    raise ValueError(
        f"{optimizer} splits each param group by parameter shape into groups with a {flag!r} flag ({given_groups} "
        f"given, {len(groups)} after the split), but ZeroRedundancyOptimizer needs its local optimizer to keep "
        f"the param groups it passes. Give ZeroRedundancyOptimizer param groups that already set {flag!r} "
        f"(e.g. {example}, with plain tensors as params), or shard with FSDP2 (fully_shard) and save with "
        f"torch.distributed.checkpoint, or use {optimizer} itself under DDP")


def check_shardable(transform, group_index: int, group: dict, params: list[Tensor]) -> None:
    """Raise ``TypeError`` naming the first sharded param and a transform that cannot step it exactly.

    A chain steps sharded params exactly on their local shards (:func:`runs_on_shards`, with a layout
    :class:`Shards` covers when it reduces), or else on the ``DTensor``\\ s, where every transform that
    is not elementwise must declare ``runs_on_dtensors = True`` (its arithmetic is exact through
    DTensor's operators, e.g. Muon's Newton-Schulz)."""
    if runs_on_shards(transform) and (chain_reach(transform) == ELEMENTWISE or Shards.of(params) is not None):
        return
    from gradkit.core.redistribute import owner_steppable

    if owner_steppable(transform) and Shards.of(params) is not None:
        # each matrix is stepped whole on an owner rank (core/redistribute.py); the owners are assigned over
        # the whole group, so every param of it must step (a param without a gradient would move the owners)
        stepping = {id(p) for p in params}
        missing = [i for i, q in enumerate(group["params"]) if q.numel() and id(q) not in stepping]
        if missing:
            names = group.get("param_names")
            i = missing[0]
            label = f"{names[i]!r}" if names else f"{i} {tuple(group['params'][i].shape)}"
            raise ValueError(f"param group {group_index}: param {label} has no gradient, and this group's sharded params "
                             "are stepped on owner ranks, assigned over every param of the group: give every param "
                             "a gradient (e.g. zeros) or put the params that may lack one in another group; params "
                             "and state are unchanged")
        return
    refusing = [t for t in walk(transform) if t.kind != ELEMENTWISE and not getattr(t, "runs_on_dtensors", False)]
    if not refusing:
        return
    dtensor = dtensor_type()
    j = next(j for j, p in enumerate(params) if isinstance(p, dtensor))
    names = group.get("param_names")
    position = next((i for i, q in enumerate(group["params"]) if q is params[j]), j)
    label = f"{names[position]!r}" if names else f"{position} {tuple(params[j].shape)}"
    t = refusing[0]
    if getattr(t, "shard_aware", False):
        reason = ("it completes its reductions over shards of dim 0 on one 1-D device mesh only, and these params "
                  "are laid out otherwise")
    elif t.kind == WHOLE_MATRIX:
        reason = "it needs each matrix whole, which the shards of this rank are not"
    else:
        reason = ("it computes statistics of whole tensors (or a basis of whole matrices) and does not complete "
                  "them over the shards")
    raise TypeError(f"param group {group_index}: param {label} is sharded (a DTensor, e.g. from FSDP2's fully_shard) "
                    f"and {type(t).__name__} cannot step it exactly: {reason}. Keep such params unsharded "
                    "(e.g. leave their module out of fully_shard, or use DDP); params and state are unchanged")


def local(tensors: list) -> list:
    """Each ``DTensor`` replaced by its local shard (a view of its storage); other entries as they are."""
    dtensor = dtensor_type()
    return [t.to_local() if isinstance(t, dtensor) else t for t in tensors]


def rewrap(new: Any, handed: Any, original: Any, param: Any) -> Any:
    """The state entry to keep after a transform ran on local shards: ``original`` (the ``DTensor``) when
    the transform kept the local tensor it was handed; else ``new`` wrapped like ``original``, or like
    ``param`` when the transform created it (a lazily allocated buffer) in the shape of the param's shard."""
    dtensor = dtensor_type()
    if new is handed or not isinstance(new, Tensor) or isinstance(new, dtensor):
        return original if new is handed else new
    template = original if isinstance(original, dtensor) else None
    if template is None and isinstance(param, dtensor) and new.shape == param.to_local().shape:
        template = param
    if template is None:
        return new
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(new, template.device_mesh, template.placements, run_check=False,
                              shape=template.shape, stride=template.stride())
