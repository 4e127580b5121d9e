"""What a combination step did: how much the objectives conflicted, and how the update relates to them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["Diagnostics", "diagnose"]

_TINY = 1e-12


@dataclass
class Diagnostics:
    """Per-step report of a gradient combination.

    Attributes:
        cosine: ``(m, m)`` pairwise cosine similarity between the objectives' gradients (0 where a
            gradient is zero).
        conflict_fraction: fraction of the ``m (m - 1) / 2`` pairs whose gradients have a negative
            inner product (0.0 for a single objective).
        norms: ``(m,)`` gradient norm of each objective, before combination.
        update_norm: norm of the combined update.
        update_cosine: ``(m,)`` cosine between the combined update and each objective's gradient;
            a negative entry means a small step along the update increases that objective.
        extra: aggregator-specific values (learned loss weights, EMA statistics, ...).
    """

    cosine: Tensor
    conflict_fraction: float
    norms: Tensor
    update_norm: float
    update_cosine: Tensor
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain Python numbers, e.g. for logging."""
        return {
            "cosine": self.cosine.tolist(),
            "conflict_fraction": self.conflict_fraction,
            "norms": self.norms.tolist(),
            "update_norm": self.update_norm,
            "update_cosine": self.update_cosine.tolist(),
            **{k: (v.tolist() if isinstance(v, Tensor) else v) for k, v in self.extra.items()},
        }


@torch.no_grad()
def diagnose(jacobian: Tensor, update: Tensor, gramian: Tensor | None = None, extra: dict[str, Any] | None = None) -> Diagnostics:
    """Diagnostics of combining the rows of ``jacobian`` into ``update`` (Gramian reused when given).

    Example:
        >>> import torch
        >>> jac = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
        >>> d = diagnose(jac, jac.sum(0))
        >>> d.conflict_fraction, d.update_cosine
        (1.0, tensor([0.0000, 0.7071]))
    """
    if gramian is None:
        gramian = jacobian @ jacobian.T
    m = gramian.shape[0]
    norms = gramian.diagonal().clamp_min(0).sqrt()
    outer = torch.outer(norms, norms)
    cosine = torch.where(outer > _TINY, gramian / outer.clamp_min(_TINY), torch.zeros_like(gramian))
    pairs = m * (m - 1) // 2
    upper = torch.triu(torch.ones(m, m, dtype=torch.bool, device=gramian.device), diagonal=1)
    conflicts = int((gramian[upper] < 0).sum()) if pairs else 0
    update_norm = update.norm()
    dots = jacobian @ update
    denom = norms * update_norm
    update_cosine = torch.where(denom > _TINY, dots / denom.clamp_min(_TINY), torch.zeros_like(dots))
    return Diagnostics(
        cosine=cosine,
        conflict_fraction=conflicts / pairs if pairs else 0.0,
        norms=norms,
        update_norm=float(update_norm),
        update_cosine=update_cosine,
        extra=dict(extra or {}),
    )
