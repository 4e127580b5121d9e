"""``backward``: several losses in, one combined gradient accumulated into ``.grad``."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from .. import distributed
from ._base import Aggregator, Context
from ._diagnostics import Diagnostics, diagnose
from ._jacobian import accumulate_into_grad, check_losses, check_params, flatten_gradients, jacobian

__all__ = ["backward", "backward_from_gradients"]


def _check_aggregator(aggregator: Aggregator, m: int, params: list[Tensor]) -> None:
    if not isinstance(aggregator, Aggregator):
        raise TypeError(
            "aggregator must be a gradkit.combine.Aggregator instance (e.g. get_aggregator('pcgrad')), "
            f"got {type(aggregator).__name__}"
        )
    want = aggregator.num_objectives
    if want is not None and m != want:
        raise ValueError(f"{type(aggregator).__name__} combines exactly {want} objectives, got {m} losses")
    # A shape-only stand-in lets the aggregator reject the step before any backward pass runs,
    # so a refused call leaves the autograd graph usable.
    n = sum(p.numel() for p in params)
    aggregator.check(torch.empty(m, n, dtype=params[0].dtype, device="meta"))


def _data_parallel_group(process_group: Any, batch_size: int | None, params: list[Tensor]):
    """The group to average over (None: no communication), after checking the call's distributed setup."""
    group = distributed.resolve_group(process_group)
    if process_group is None and distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        raise ValueError(
            f"torch.distributed is initialised with {torch.distributed.get_world_size()} ranks, so process_group must be "
            "chosen: torch.distributed.group.WORLD (or the data-parallel group) combines the gradients of the whole "
            "batch, as DDP does for one loss; gradkit.distributed.LOCAL combines this rank's gradients alone"
        )
    if batch_size is not None:
        if group is None:
            raise ValueError("batch_size weights this rank's gradients in the average over process_group; it needs a process_group")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer (this rank's number of examples) or None, got {batch_size!r}")
    for i, p in enumerate(params):
        if distributed.is_dtensor(p):
            raise ValueError(
                f"params[{i}] (shape {tuple(p.shape)}) is a sharded DTensor (e.g. under FSDP2); combine needs every "
                "objective's whole gradient on each rank: use DDP (replicated parameters) for the combined parameters"
            )
    return group


def _average_over_ranks(jac: Tensor, losses: Tensor | None, group, batch_size: int | None) -> tuple[Tensor, Tensor | None]:
    """Each objective's gradient (and loss) as the mean over the ranks' data, in place in ``jac``.

    Every rank holds the gradients of its own share of the batch; the combination is not linear, so
    the per-objective rows are averaged first (weighted by ``batch_size`` when the shares differ)
    and every rank then aggregates the same global Jacobian.
    """
    if group is None:
        return jac, losses
    if batch_size is None and losses is None:
        return distributed.all_reduce_sum(jac, group).div_(distributed.world_size(group)), None
    weight = 1.0 if batch_size is None else float(batch_size)
    if batch_size is not None:
        jac.mul_(weight)
    distributed.all_reduce_sum(jac, group)
    small = torch.full((1,), weight, dtype=torch.float64, device=jac.device)
    if losses is not None:
        small = torch.cat([losses.to(torch.float64) * weight, small])
    distributed.all_reduce_sum(small, group)
    total = small[-1]
    jac.div_(total.to(jac.dtype))
    return jac, None if losses is None else (small[:-1] / total).to(losses.dtype)


def _combine(aggregator: Aggregator, jac: Tensor, params: list[Tensor], losses: Tensor | None, group=None) -> Diagnostics:
    context = Context(jac, losses=losses, params=params)
    with torch.no_grad():
        update = aggregator(jac, context)
    if update.shape != (jac.shape[1],):
        raise RuntimeError(f"{type(aggregator).__name__}.aggregate returned shape {tuple(update.shape)}, expected ({jac.shape[1]},)")
    # Replicas stay identical only if every rank aggregates identically (e.g. PCGrad needs seed=).
    distributed.check_same_on_ranks(update, group, f"the update of {type(aggregator).__name__}")
    accumulate_into_grad(update, params)
    return diagnose(jac, update, context.gramian(), aggregator.diagnostics())


def backward(
    losses: Sequence[Tensor] | Tensor,
    params: Iterable[Tensor],
    aggregator: Aggregator,
    *,
    retain_graph: bool = False,
    batched: bool = False,
    process_group: Any = None,
    batch_size: int | None = None,
) -> Diagnostics:
    """Combine the gradients of several losses and accumulate the result into ``.grad``.

    Computes each loss's gradient with respect to ``params`` (one backward pass per loss, or a
    single vectorised one with ``batched=True``), lets ``aggregator`` turn the resulting Jacobian
    into one update, and adds that update to each parameter's ``.grad`` exactly as
    ``loss.backward()`` would; any optimizer then steps on it. Returns the step's diagnostics.

    Example::

        agg = gradkit.combine.get_aggregator("pcgrad", seed=0)
        opt.zero_grad()
        info = gradkit.combine.backward([loss_a, loss_b], model.parameters(), agg)
        opt.step()
        print(info.conflict_fraction, info.cosine)

    Bad input raises before any gradient is computed, and leaves ``.grad`` untouched.

    Data-parallel training (DDP): each rank passes the losses of its own share of the batch and
    ``process_group=torch.distributed.group.WORLD`` (or the data-parallel group). Every objective's
    gradient is then averaged over the ranks *before* aggregation (one all-reduce of the Jacobian),
    since the aggregators are not linear, and every rank writes the same combined gradient: the
    update for the whole batch. ``batch_size`` (this rank's number of examples) weights the average
    when the shares differ; by default they count equally, as in DDP. The Jacobian is taken with
    ``torch.autograd.grad``, which does not run DDP's gradient hooks, so the model may be the
    DDP-wrapped one and nothing is averaged twice. A randomised aggregator must draw the same
    numbers on every rank (``PCGrad(seed=...)``); the update is checked to agree across ranks
    before it is written. ``process_group=None`` uses this process's gradients only and is
    refused while torch.distributed is initialised with several ranks (pass
    ``gradkit.distributed.LOCAL`` to mean it). Sharded (FSDP2/DTensor) parameters raise.

    Args:
        losses: the objectives, scalar tensors (a sequence or a 1-D tensor).
        params: the shared parameters whose ``.grad`` receives the combined gradient.
        aggregator: an :class:`Aggregator` (e.g. ``get_aggregator("upgrad")``).
        retain_graph: keep the graph for another backward pass.
        batched: one vectorised backward pass instead of one per loss.
        process_group: the data-parallel group to average each objective's gradient over (above), or
            ``gradkit.distributed.LOCAL``.
        batch_size: this rank's number of examples, to weight the average when shares differ.

    Example (``w0^2`` and ``w1 - w0`` pull ``w0`` in opposite directions):
        >>> import torch
        >>> from gradkit import combine
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        >>> info = combine.backward([w[0] ** 2, w[1] - w[0]], [w], combine.UPGrad())
        >>> w.grad, info.conflict_fraction
        (tensor([0.5001, 0.9999]), 1.0)
    """
    losses = check_losses(losses)
    params = check_params(params)
    group = _data_parallel_group(process_group, batch_size, params)
    _check_aggregator(aggregator, len(losses), params)
    jac = jacobian(losses, params, retain_graph=retain_graph, batched=batched)
    values = torch.stack([loss.detach().reshape(()) for loss in losses]).to(jac.dtype)
    jac, values = _average_over_ranks(jac, values, group, batch_size)
    return _combine(aggregator, jac, params, values, group)


def backward_from_gradients(
    gradients: Sequence[Sequence[Tensor]] | Tensor,
    params: Iterable[Tensor],
    aggregator: Aggregator,
    *,
    losses: Sequence[float] | Tensor | None = None,
    process_group: Any = None,
    batch_size: int | None = None,
) -> Diagnostics:
    """Like ``backward`` for gradients computed elsewhere.

    ``gradients`` is either a ``(num_objectives, num_param_entries)`` tensor or, per objective, a
    list of tensors shaped like ``params``. ``losses`` (the objectives' current values) is needed
    only by aggregators that read them, such as GradNorm. ``process_group`` and ``batch_size``
    average the gradients (and losses) over data-parallel ranks as in ``backward``; the
    ``gradients`` passed in are not modified.

    Example:
        >>> import torch
        >>> from gradkit import combine
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> _ = combine.backward_from_gradients(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]), [w], combine.Sum())
        >>> w.grad
        tensor([0., 1.])
    """
    params = check_params(params)
    group = _data_parallel_group(process_group, batch_size, params)
    jac = flatten_gradients(gradients, params)
    _check_aggregator(aggregator, jac.shape[0], params)
    values = None
    if losses is not None:
        if isinstance(losses, Tensor):
            values = losses.detach().reshape(-1).to(device=jac.device, dtype=jac.dtype)
        else:
            values = torch.tensor([float(v) for v in losses], dtype=jac.dtype, device=jac.device)
        if values.numel() != jac.shape[0]:
            raise ValueError(f"losses must hold one value per objective ({jac.shape[0]}), got {values.numel()}")
    # A copy whenever the average is taken in place: the caller's gradients stay as they were.
    jac = jac.to(device=params[0].device, dtype=params[0].dtype, copy=group is not None)
    jac, values = _average_over_ranks(jac, values, group, batch_size)
    return _combine(aggregator, jac, params, values, group)
