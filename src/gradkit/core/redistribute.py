"""Whole-matrix transforms on sharded params: each matrix is stepped whole on one owner rank.

A transform that needs each matrix whole (an SVD/QR basis, Newton-Schulz, a norm over a projected
subspace) cannot run on the rows a rank holds under FSDP2. When every such transform of a chain computes
each param's update from that param alone (it declares ``owner_steppable = True``), the optimizer steps a
group of sharded params this way (:func:`step_on_owners`):

1. every sharded param gets an *owner* rank (:func:`assign_owners`: the heaviest matrices first, each to
   the least loaded rank, cost ``m * n * min(m, n)`` for an ``m x n`` matrix, the order of an SVD);
2. one ``all_to_all`` moves each rank's rows of every gradient and param to the param's owner
   (:meth:`OwnerPlan.gather`);
3. the owner runs the whole chain on its matrices, exactly as one process does on the whole tensors;
4. one ``all_to_all`` sends each rank its rows of the stepped params (:meth:`OwnerPlan.scatter`).

Replicated params (``Replicate`` placement) are whole on every rank: each rank steps them itself, with
no communication, as one process would.

State lives on the owner: every state tensor of an owned param is the whole tensor, held only by its
owner (the other ranks keep the param's step counter alone), so ``state_bytes`` on a rank counts the
state of the matrices it owns and the ranks' counts add up to the one-process figure. State is
initialised over the whole group in the group's order (params of other owners on the meta device), so
counters kept in group-level state (the low-rank projectors' per-param seeds) are those one process
assigns, and random bases are the same on every world size.

Communication per step, for a sharded ``m x n`` matrix of ``b``-byte entries over ``W`` ranks: the rows
not already on the owner, about ``m n b (W - 1) / W`` bytes for the gradient and as many for the param
to the owner, and as many for the stepped param back: ``3 m n b (W - 1) / W`` bytes in all, in two
collectives per group and step whatever the number of matrices. Gathering every whole matrix on every rank
(what DTensor's ``full_tensor`` does) moves ``m n b (W - 1)`` bytes per tensor gathered, ``W`` times as
many per tensor, and repeats the whole-matrix arithmetic on every rank.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from gradkit.core.sharding import Shards, dtensor_type, local, walk

__all__ = ["assign_owners", "row_counts", "OwnerPlan", "owner_steppable", "owner_plan"]


def row_counts(rows: int, world: int) -> list[int]:
    """The rows each rank holds of a tensor sharded on dim 0 (``torch.chunk``'s split, as DTensor's ``Shard(0)``).

    >>> row_counts(5, 2), row_counts(5, 4)
    ([3, 2], [2, 2, 1, 0])
    """
    chunk = -(-rows // world) if rows else 0
    return [max(0, min(chunk, rows - r * chunk)) for r in range(world)]


def _cost(shape: torch.Size) -> int:
    m = shape[0] if len(shape) else 1
    n = math.prod(shape[1:]) if len(shape) > 1 else 1
    return m * n * min(m, n)


def assign_owners(shapes: list, world: int) -> list[int]:
    """An owner rank per tensor: the costliest first (``m * n * min(m, n)``), each to the least loaded rank.

    Deterministic (ties go to the lower index and the lower rank), so every rank computes the same plan.

    >>> assign_owners([(4, 4), (8, 8), (2, 2), (8, 8)], 2)
    [0, 0, 1, 1]
    """
    if not isinstance(world, int) or world < 1:
        raise ValueError(f"world must be a positive int, got {world!r}")
    load = [0] * world
    owners = [0] * len(shapes)
    for i in sorted(range(len(shapes)), key=lambda i: (-_cost(torch.Size(shapes[i])), i)):
        r = min(range(world), key=lambda r: (load[r], r))
        owners[i] = r
        load[r] += _cost(torch.Size(shapes[i]))
    return owners


class OwnerPlan:
    """Who owns which of a group's sharded tensors, and the two collectives that move rows to owners and back.

    Build with :meth:`of` (``None`` for layouts :class:`~gradkit.core.sharding.Shards` does not cover).
    ``owners[i]`` is the owner's rank in the mesh, or ``None`` for a replicated tensor (whole everywhere).
    Every rank must build it from the same params and call ``gather``/``scatter`` in the same order.

    >>> import torch
    >>> OwnerPlan.of([torch.zeros(2, 2)]) is None  # no DTensor: nothing to redistribute
    True
    """

    def __init__(self, shards: Shards):
        import torch.distributed as dist

        self.group = shards.group
        self.world = dist.get_world_size(self.group)
        self.rank = dist.get_rank(self.group)
        self.shapes = shards.shapes
        sharded = [i for i, s in enumerate(shards.sharded) if s]
        owners = assign_owners([self.shapes[i] for i in sharded], self.world)
        self.owners: list[int | None] = [None] * len(self.shapes)
        for i, r in zip(sharded, owners):
            self.owners[i] = r
        self.rows = [row_counts(s[0], self.world) if o is not None else None for s, o in zip(self.shapes, self.owners)]
        #: indices this rank steps: the sharded tensors it owns and every replicated one
        self.mine = [i for i, o in enumerate(self.owners) if o is None or o == self.rank]
        self.sent_bytes = 0  # bytes this rank sent in the collectives so far

    @classmethod
    def of(cls, params: list[Tensor]) -> "OwnerPlan | None":
        shards = Shards.of(params)
        return None if shards is None else cls(shards)

    def _width(self, i: int) -> int:
        return math.prod(self.shapes[i][1:])

    def _owned_by(self, r: int) -> list[int]:
        return [i for i, o in enumerate(self.owners) if o == r]

    def _exchange(self, send: list[list[Tensor]], recv_numels: list[int], like: Tensor) -> list[Tensor]:
        """One ``all_to_all``: ``send[r]`` (flat pieces) to rank ``r``; returns the flat chunk from each rank."""
        import torch.distributed as dist

        empty = like.new_empty(0)
        pieces = [torch.cat(chunk) if chunk else empty for chunk in send]
        out = like.new_empty(sum(recv_numels))
        dist.all_to_all_single(out, torch.cat(pieces), recv_numels, [p.numel() for p in pieces], group=self.group)
        self.sent_bytes += sum(p.numel() for r, p in enumerate(pieces) if r != self.rank) * like.element_size()
        return list(out.split(recv_numels))

    def gather(self, lists: list[list[Tensor]]) -> list[list[Tensor | None]]:
        """For each list of local tensors (e.g. gradients and params), the whole tensors this rank steps
        (:attr:`mine`; the local tensor itself where it is replicated) and ``None`` elsewhere. One collective."""
        out = [[t if o is None else None for t, o in zip(values, self.owners)] for values in lists]
        if all(o is None for o in self.owners):
            return out
        dtypes = {t.dtype for values in lists for t, o in zip(values, self.owners) if o is not None}
        if len(dtypes) != 1:
            raise TypeError(f"sharded params stepped on owner ranks must share one dtype, got {sorted(map(str, dtypes))}")
        like = next(t for values in lists for t, o in zip(values, self.owners) if o is not None)
        send = [[values[i].reshape(-1) for i in self._owned_by(r) for values in lists] for r in range(self.world)]
        mine = self._owned_by(self.rank)
        recv = [sum(self.rows[i][s] * self._width(i) for i in mine) * len(lists) for s in range(self.world)]
        chunks = [iter(c.split([self.rows[i][s] * self._width(i) for i in mine for _ in lists]))
                  for s, c in enumerate(self._exchange(send, recv, like))]
        for i in mine:
            for k in range(len(lists)):
                rows = [next(chunks[s]).view(self.rows[i][s], *self.shapes[i][1:]) for s in range(self.world)]
                out[k][i] = torch.cat(rows)
        return out

    def scatter(self, wholes: dict[int, Tensor], like: Tensor) -> dict[int, Tensor]:
        """Each rank's rows of the sharded tensors its peers own, from ``wholes`` (index -> whole tensor, for
        the sharded tensors this rank owns); this rank's rows of every sharded tensor. One collective."""
        if all(o is None for o in self.owners):
            return {}
        offsets = {i: [sum(self.rows[i][:r]) for r in range(self.world)] for i in wholes}
        send = [[wholes[i][offsets[i][r]:offsets[i][r] + self.rows[i][r]].reshape(-1) for i in self._owned_by(self.rank)]
                for r in range(self.world)]
        recv = [sum(self.rows[i][self.rank] * self._width(i) for i in self._owned_by(s)) for s in range(self.world)]
        out = {}
        for s, chunk in enumerate(self._exchange(send, recv, like)):
            owned = self._owned_by(s)
            for i, flat in zip(owned, chunk.split([self.rows[i][self.rank] * self._width(i) for i in owned])):
                out[i] = flat.view(self.rows[i][self.rank], *self.shapes[i][1:])
        return out


def owner_steppable(transform) -> bool:
    """True when every transform in the chain that is not elementwise declares ``owner_steppable``: it
    computes each param's update from that param alone, so the params can be stepped on different ranks.

    >>> import gradkit
    >>> owner_steppable(gradkit.chain(gradkit.scale_by_trust_region("spectral"), gradkit.scale_by_learning_rate()))
    True
    >>> owner_steppable(gradkit.scale_by_trust_region("l2"))  # normalized over the whole group
    False
    """
    from gradkit.core.state import ELEMENTWISE

    return all(t.kind == ELEMENTWISE or getattr(t, "owner_steppable", False) for t in walk(transform))


def owner_plan(transform, params: list[Tensor]) -> OwnerPlan | None:
    """The plan to step these (some sharded) params on owners, or ``None`` when the chain runs on the local
    shards (cheaper: no rows move) or cannot be stepped on owners (not :func:`owner_steppable`, or a layout
    :class:`~gradkit.core.sharding.Shards` does not cover).

    >>> import torch, gradkit
    >>> owner_plan(gradkit.scale_by_trust_region("spectral"), [torch.zeros(3, 3)]) is None  # not sharded
    True
    """
    from gradkit.core.sharding import chain_reach, runs_on_shards
    from gradkit.core.state import ELEMENTWISE

    if runs_on_shards(transform) and (chain_reach(transform) == ELEMENTWISE or Shards.of(params) is not None):
        return None
    if not owner_steppable(transform):
        return None
    return OwnerPlan.of(params)


def step_on_owners(optimizer, group: dict, group_state: dict, params: list[Tensor], params_c: list[Tensor],
                   grads_c: list[Tensor], plan: OwnerPlan) -> Callable[[], None]:
    """Run ``optimizer``'s chain for one group on the owners (module docstring); returns the ``apply`` that
    writes the params (and sends each rank its rows). ``params_c``/``grads_c`` are in the compute dtype."""
    from gradkit.core.context import StepContext

    full_g, full_p = plan.gather([local(grads_c), local(params_c)])
    mine = set(plan.mine)
    states = [optimizer.state[p] for p in params]
    new = [i for i, s in enumerate(states) if "step" not in s]
    if new:  # initialised over the whole group in its order: group-level counters match one process
        shadows = [full_p[i] if i in mine else torch.empty(plan.shapes[i], dtype=params_c[i].dtype, device="meta")
                   for i in new]
        init = optimizer.transform.init(shadows, StepContext(group, [0] * len(new), group_state))
        for key, values in init.items():
            for i, v in zip(new, values):
                if v is not None and i in mine:
                    states[i][key] = v
        for i in new:
            states[i]["step"] = 0
    order = plan.mine
    keys = sorted(set().union(*(states[i] for i in order)) - {"step"}) if order else []
    lists = {k: [states[i].get(k) for i in order] for k in keys}
    ctx = StepContext(group, [states[i]["step"] + 1 for i in order], group_state)
    wholes = [full_p[i] for i in order]
    updates = optimizer.transform.update([full_g[i] for i in order], lists, wholes, ctx) if order else []
    for k, values in lists.items():
        for i, v in zip(order, values):
            if v is not None:
                states[i][k] = v
    dtensor = dtensor_type()

    def apply() -> None:
        ctx.apply(wholes, updates)
        owned = {i: full_p[i] for i in order if plan.owners[i] is not None}
        rows = plan.scatter(owned, local(params_c)[0])
        for i, p in enumerate(params):
            target = p.to_local() if isinstance(p, dtensor) else p
            if i in rows:
                target.detach().copy_(rows[i])
            elif params_c[i] is not p:  # a replicated param stepped in the compute dtype
                target.detach().copy_(local([params_c[i]])[0])

    return apply
