"""PCGrad: project each task's gradient off the gradients it conflicts with.

Tianhe Yu, Saurabh Kumar, Abhishek Gupta, Sergey Levine, Karol Hausman, Chelsea Finn.
"Gradient Surgery for Multi-Task Learning", NeurIPS 2020, arXiv:2001.06782.
Official code: https://github.com/tianheyu927/PCGrad

For each task ``i``, starting from ``g_i^PC = g_i`` and visiting the other tasks ``j`` in random
order::

    if <g_i^PC, g_j> < 0:   g_i^PC <- g_i^PC - <g_i^PC, g_j> / ||g_j||^2 * g_j

and the update is ``sum_i g_i^PC`` (``reduction="sum"``, Algorithm 1 of the paper) or their mean.

Implementation: every ``g_i^PC`` stays in the span of the original gradients, so the surgery runs
on an ``m x m`` coefficient matrix ``C`` (``g^PC = C J``) using only the Gramian ``J J^T``; all
tasks advance together, one position of their random orders per iteration. The full-size
Jacobian is touched twice (Gramian and final combination) whatever the number of tasks.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._base import Aggregator, Context, register_aggregator

__all__ = ["PCGrad"]

REDUCTIONS = ("sum", "mean")


@register_aggregator("pcgrad")
class PCGrad(Aggregator):
    """Gradient surgery (Yu et al., 2020).

    Each ``g_i`` in conflict with ``g_j`` (``g_i . g_j < 0``, other tasks in random order) is projected onto
    the normal plane of ``g_j``: ``g_i <- g_i - (g_i . g_j) / |g_j|^2 g_j``; the update is their sum.

    Args:
        reduction: ``"sum"`` (the paper's update) or ``"mean"`` of the projected gradients.
        seed: seeds a private CPU generator for the random task orders.
        generator: a ``torch.Generator`` to draw task orders from (exclusive with ``seed``);
            with neither, the global RNG is used.

    Example (two conflicting gradients as the rows of a Jacobian):
        >>> import torch
        >>> from gradkit.combine import PCGrad
        >>> PCGrad(seed=0)(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
        tensor([0.5000, 1.5000])
    """

    def __init__(self, reduction: str = "sum", *, seed: int | None = None, generator: torch.Generator | None = None):
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if seed is not None and generator is not None:
            raise ValueError("pass at most one of seed and generator")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        self.reduction = reduction
        self.generator = generator
        self._last_norms: Tensor | None = None

    def _orders(self, m: int) -> Tensor:
        # Row i is a random permutation of all tasks; i itself is skipped when reached.
        keys = torch.rand(m, m, generator=self.generator, device=self.generator.device if self.generator else "cpu")
        return keys.argsort(dim=1)

    def aggregate(self, jacobian: Tensor, context: Context) -> Tensor:
        m = jacobian.shape[0]
        gram = context.gramian()
        orders = self._orders(m).to(gram.device)
        rows = torch.arange(m, device=gram.device)
        sq_norms = gram.diagonal()
        coef = torch.eye(m, dtype=gram.dtype, device=gram.device)
        for k in range(m):
            j = orders[:, k]
            dots = (coef @ gram)[rows, j]  # <g_i^PC, g_j> for every i at once
            conflict = (dots < 0) & (j != rows) & (sq_norms[j] > 0)
            step = torch.where(conflict, dots / sq_norms[j].clamp_min(torch.finfo(gram.dtype).tiny), torch.zeros_like(dots))
            coef[rows, j] -= step
        self._last_norms = ((coef @ gram) * coef).sum(dim=1).clamp_min(0).sqrt()
        weights = coef.sum(dim=0)
        if self.reduction == "mean":
            weights = weights / m
        return weights @ jacobian

    def diagnostics(self) -> dict[str, Any]:
        # Norm of each task's gradient after surgery, next to Diagnostics.norms (before).
        return {} if self._last_norms is None else {"projected_norms": self._last_norms}

    def state_dict(self) -> dict[str, Any]:
        return {"generator_state": self.generator.get_state()} if self.generator is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        extra = set(state_dict) - {"generator_state"}
        if extra:
            raise ValueError(f"PCGrad state_dict keys must be a subset of ['generator_state'], got {sorted(state_dict)}")
        if "generator_state" in state_dict:
            if self.generator is None:
                raise ValueError("this PCGrad draws from the global RNG; build it with seed= or generator= to load a generator_state")
            self.generator.set_state(state_dict["generator_state"])

    def __repr__(self) -> str:
        return f"PCGrad(reduction={self.reduction!r})"
