"""UPGrad: project every objective's gradient onto the dual cone of all of them, then average.

Pierre Quinton, Valérian Rey. "Jacobian Descent for Multi-Objective Optimization",
arXiv:2406.16232 (2024). Official code: https://github.com/TorchJD/torchjd

With ``J`` the Jacobian (rows ``g_i``) and ``pi_J`` the projection onto the dual cone
``{d : J d >= 0}``, the update is (eq. 5 of the paper, with preference weights ``p``)::

    A(J) = sum_i p_i * pi_J(g_i)        (p_i = 1/m by default)

Each projection is found through its dual (Proposition 1): ``pi_J(J^T u) = J^T v`` where ``v``
minimises ``v^T G v`` subject to ``v >= u``, ``G = J J^T``. The ``m`` small problems (one per
``u = p_i e_i``) are solved together by the batched active-set solver in ``_dual_cone``; nothing
of size ``n`` is touched besides the Gramian and the final ``w @ J``.

As in the official implementation, the Gramian is first divided by its trace (set to zero when
the trace is below ``norm_eps``, in which case the output is the ``p``-weighted mean of the
rows, conflicts included: pass ``norm_eps=0`` for gradients that are legitimately that small)
and ``reg_eps * I`` is added so that the problem stays strictly
convex when gradients are parallel or zero. The regularisation means the output's inner product
with a row can be negative by at most about ``reg_eps * trace(G) * v_i``; ``reg_eps=0`` gives the
exact projection on Jacobians with linearly independent rows.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._base import Aggregator, Context, register_aggregator
from ._dual_cone import project_weights

__all__ = ["UPGrad"]


@register_aggregator("upgrad")
class UPGrad(Aggregator):
    """Unconflicting projection of gradients (Quinton & Rey).

    Each ``g_i`` is projected onto the dual cone of the rows (``{v: g_j . v >= 0 for all j}``), the
    projections weighted by ``pref_vector`` and summed, so the update conflicts with no objective.

    Args:
        pref_vector: weights ``p`` of the projected gradients (length ``m``); default ``1/m`` each.
        norm_eps: traces of the Gramian below this count as zero.
        reg_eps: added to the normalised Gramian's diagonal (>= 0).

    Example (two conflicting gradients as the rows of a Jacobian):
        >>> import torch
        >>> from gradkit.combine import UPGrad
        >>> UPGrad()(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
        tensor([0.2499, 0.7500])
    """

    def __init__(self, pref_vector: Tensor | None = None, *, norm_eps: float = 1e-4, reg_eps: float = 1e-4):
        if pref_vector is not None:
            pref_vector = torch.as_tensor(pref_vector)
            if pref_vector.ndim != 1 or pref_vector.numel() == 0:
                raise ValueError(f"pref_vector must be a non-empty 1-D tensor, got shape {tuple(pref_vector.shape)}")
        if not norm_eps >= 0:
            raise ValueError(f"norm_eps must be >= 0, got {norm_eps}")
        if not reg_eps >= 0:
            raise ValueError(f"reg_eps must be >= 0, got {reg_eps}")
        self.pref_vector = pref_vector
        self.norm_eps = float(norm_eps)
        self.reg_eps = float(reg_eps)
        self._last_weights: Tensor | None = None

    def check(self, jacobian: Tensor) -> None:
        super().check(jacobian)
        if self.pref_vector is not None and self.pref_vector.numel() != jacobian.shape[0]:
            raise ValueError(f"pref_vector has {self.pref_vector.numel()} entries but there are {jacobian.shape[0]} objectives")

    def weights(self, gramian: Tensor) -> Tensor:
        """The combination weights ``w`` (``A(J) = w @ J``) for a Gramian, in float64."""
        m = gramian.shape[0]
        g = gramian.to(torch.float64)
        trace = g.diagonal().sum()
        g = torch.where(trace < self.norm_eps, torch.zeros_like(g), g / trace)
        g = g + self.reg_eps * torch.eye(m, dtype=g.dtype, device=g.device)
        if self.pref_vector is None:
            p = torch.full((m,), 1.0 / m, dtype=g.dtype, device=g.device)
        else:
            p = self.pref_vector.to(dtype=g.dtype, device=g.device)
        return project_weights(torch.diag(p), g).sum(dim=0)

    def aggregate(self, jacobian: Tensor, context: Context) -> Tensor:
        w = self.weights(context.gramian())
        self._last_weights = w
        return w.to(jacobian.dtype) @ jacobian

    def diagnostics(self) -> dict[str, Any]:
        return {} if self._last_weights is None else {"weights": self._last_weights}

    def __repr__(self) -> str:
        return f"UPGrad(pref_vector={self.pref_vector!r}, norm_eps={self.norm_eps}, reg_eps={self.reg_eps})"
