"""``backward``: several losses in, one combined gradient accumulated into ``.grad``."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor

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


def _combine(aggregator: Aggregator, jac: Tensor, params: list[Tensor], losses: Tensor | None) -> Diagnostics:
    context = Context(jac, losses=losses, params=params)
    with torch.no_grad():
        update = aggregator(jac, context)
    if update.shape != (jac.shape[1],):
        raise RuntimeError(f"{type(aggregator).__name__}.aggregate returned shape {tuple(update.shape)}, expected ({jac.shape[1]},)")
    accumulate_into_grad(update, params)
    return diagnose(jac, update, context.gramian(), aggregator.diagnostics())


def backward(
    losses: Sequence[Tensor] | Tensor,
    params: Iterable[Tensor],
    aggregator: Aggregator,
    *,
    retain_graph: bool = False,
    batched: bool = False,
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

    Args:
        losses: the objectives, scalar tensors (a sequence or a 1-D tensor).
        params: the shared parameters whose ``.grad`` receives the combined gradient.
        aggregator: an :class:`Aggregator` (e.g. ``get_aggregator("upgrad")``).
        retain_graph: keep the graph for another backward pass.
        batched: one vectorised backward pass instead of one per loss.

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
    _check_aggregator(aggregator, len(losses), params)
    jac = jacobian(losses, params, retain_graph=retain_graph, batched=batched)
    values = torch.stack([loss.detach().reshape(()) for loss in losses]).to(jac.dtype)
    return _combine(aggregator, jac, params, values)


def backward_from_gradients(
    gradients: Sequence[Sequence[Tensor]] | Tensor,
    params: Iterable[Tensor],
    aggregator: Aggregator,
    *,
    losses: Sequence[float] | Tensor | None = None,
) -> Diagnostics:
    """Like ``backward`` for gradients computed elsewhere.

    ``gradients`` is either a ``(num_objectives, num_param_entries)`` tensor or, per objective, a
    list of tensors shaped like ``params``. ``losses`` (the objectives' current values) is needed
    only by aggregators that read them, such as GradNorm.

    Example:
        >>> import torch
        >>> from gradkit import combine
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> _ = combine.backward_from_gradients(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]), [w], combine.Sum())
        >>> w.grad
        tensor([0., 1.])
    """
    params = check_params(params)
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
    return _combine(aggregator, jac.to(device=params[0].device, dtype=params[0].dtype), params, values)
