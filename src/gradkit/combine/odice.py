"""Orthogonal-gradient update for value learning, with the semi- and true-gradient rules beside it.

Liyuan Mao, Haoran Xu, Weinan Zhang, Xianyuan Zhan. "ODICE: Revealing the Mystery of
Distribution Correction Estimation via Orthogonal-gradient Update", ICLR 2024, arXiv:2402.00348.
Official code: https://github.com/maoliyuan/ODICE-Pytorch

A DICE value objective ``E[f*(r + gamma V(s') - V(s))]`` has two gradient terms: the *forward*
gradient, taken through ``V(s)`` with ``V(s')`` held fixed, and the *backward* gradient, taken
through ``V(s')`` with ``V(s)`` held fixed. Rows of the Jacobian, in this order:

    0: forward gradient g_f        1: backward gradient g_b
    2...: further terms, added unchanged (e.g. the (1 - lambda) E[V(s0)] term, which the
          official code adds after the projection)

The three rules::

    semi-gradient        g_f
    true gradient        g_f + g_b
    orthogonal gradient  g_f + eta * (g_b - <g_f, g_b> / max(||g_f||^2, eps) * g_f)

The orthogonal rule projects the backward gradient onto the normal plane of the forward one, so
it can never cancel the forward gradient (Theorem 2 of the paper); ``eps = 1e-10`` guards a zero
forward gradient as in the official code.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

from ._base import Aggregator, Context, register_aggregator

__all__ = ["OrthogonalGradient", "SemiGradient", "TrueGradient"]


class _ForwardBackward(Aggregator):
    def check(self, jacobian: Tensor) -> None:
        super().check(jacobian)
        if jacobian.shape[0] < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 objectives (forward, backward), got {jacobian.shape[0]}"
            )


@register_aggregator("orthogonal")
class OrthogonalGradient(_ForwardBackward):
    """ODICE's orthogonal-gradient update.

    Rows are the forward and backward gradients ``g_f, g_b``:
    ``u = g_f + eta * (g_b - (g_b . g_f) / max(|g_f|^2, eps) g_f)`` (further rows added unchanged).

    Args:
        eta: weight of the projected backward gradient (the paper's eta, 1.0 in its toy examples).
        eps: lower bound on ``||g_f||^2`` in the projection coefficient.

    Example (two conflicting gradients as the rows of a Jacobian):
        >>> import torch
        >>> from gradkit.combine import OrthogonalGradient
        >>> OrthogonalGradient()(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
        tensor([1., 1.])
    """

    def __init__(self, eta: float = 1.0, *, eps: float = 1e-10):
        if not eta >= 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.eta = float(eta)
        self.eps = float(eps)
        self._last: dict[str, Any] = {}

    def aggregate(self, jacobian: Tensor, context: Context) -> Tensor:
        gram = context.gramian()
        forward, backward = jacobian[0], jacobian[1]
        coef = gram[0, 1] / gram[0, 0].clamp_min(self.eps)
        update = forward + self.eta * (backward - coef * forward) + jacobian[2:].sum(dim=0)
        self._last = {"parallel_coef": float(coef)}
        return update

    def diagnostics(self) -> dict[str, Any]:
        return dict(self._last)

    def __repr__(self) -> str:
        return f"OrthogonalGradient(eta={self.eta})"


@register_aggregator("semi_gradient")
class SemiGradient(_ForwardBackward):
    """The semi-gradient rule: the forward gradient alone (the backward gradient is dropped).

    Example (two conflicting gradients as the rows of a Jacobian):
        >>> import torch
        >>> from gradkit.combine import SemiGradient
        >>> SemiGradient()(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
        tensor([1., 0.])
    """

    def aggregate(self, jacobian: Tensor, context: Context) -> Tensor:
        return jacobian[0] + jacobian[2:].sum(dim=0)


@register_aggregator("true_gradient")
class TrueGradient(_ForwardBackward):
    """The true-gradient rule: forward plus backward gradient, the full gradient of the objective.

    Example (two conflicting gradients as the rows of a Jacobian):
        >>> import torch
        >>> from gradkit.combine import TrueGradient
        >>> TrueGradient()(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
        tensor([0., 1.])
    """

    def aggregate(self, jacobian: Tensor, context: Context) -> Tensor:
        return jacobian.sum(dim=0)
