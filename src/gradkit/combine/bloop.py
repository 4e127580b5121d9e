"""Bloop: project the auxiliary gradient orthogonally to an EMA of the main gradient.

Yu-Guan Hsieh, James Thornton, Eugene Ndiaye, Michal Klein, Marco Cuturi, Pierre Ablin.
"Careful with that Scalpel: Improving Gradient Surgery with an EMA", ICML 2024, arXiv:2402.02998.
Official code: https://github.com/apple/ml-bloop

Rows of the Jacobian: 0 = main (training) gradient ``g``, 1 = auxiliary gradient ``h``::

    m_t = m_{t-1} + ema * (g_t - m_{t-1})          (m_0 = g_0 with init="grad")
    d_t = g_t + aux_weight * (h_t - <m_t, h_t> / (||m_t||^2 + eps) * m_t)

Projecting on an EMA rather than on the current mini-batch gradient keeps the auxiliary
direction orthogonal to the *expected* main gradient, which the paper shows is what makes the
bilevel interpretation (minimise the auxiliary loss among minimisers of the main loss) hold under
stochastic gradients. ``ema`` is the weight of the newest gradient, as in the official code
(its default 0.1 and ``eps = 1e-7`` are kept). The EMA lives in this object and is saved by
``state_dict()``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._base import Aggregator, Context, register_aggregator

__all__ = ["Bloop"]

INITS = ("grad", "zeros")


@register_aggregator("bloop")
class Bloop(Aggregator):
    """Bilevel gradient surgery with an EMA of the main gradient (Hsieh et al., 2024).

    Row 0 is the main gradient ``g``, row 1 the auxiliary ``h``; with ``m`` the EMA of ``g``:
    ``u = g + aux_weight * (h - (h . m) / (|m|^2 + eps) m)``.

    Args:
        aux_weight: weight of the projected auxiliary gradient (the paper's lambda).
        ema: EMA coefficient of the newest main gradient, in (0, 1].
        eps: added to ``||m||^2`` in the projection coefficient.
        init: ``"grad"`` starts the EMA at the first main gradient, ``"zeros"`` at zero.

    Example (two conflicting gradients as the rows of a Jacobian):
        >>> import torch
        >>> from gradkit.combine import Bloop
        >>> Bloop()(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
        tensor([1.0000, 0.1000])
    """

    num_objectives = 2

    def __init__(self, aux_weight: float = 0.1, ema: float = 0.1, *, eps: float = 1e-7, init: str = "grad"):
        if not aux_weight >= 0:
            raise ValueError(f"aux_weight must be >= 0, got {aux_weight}")
        if not 0 < ema <= 1:
            raise ValueError(f"ema must be in (0, 1], got {ema}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.aux_weight = float(aux_weight)
        self.ema = float(ema)
        self.eps = float(eps)
        self.init = init
        self.main_ema: Tensor | None = None
        self.steps = 0
        self._last: dict[str, Any] = {}

    def check(self, jacobian: Tensor) -> None:
        super().check(jacobian)
        if self.main_ema is not None and self.main_ema.numel() != jacobian.shape[1]:
            raise ValueError(
                f"the stored main-gradient EMA has {self.main_ema.numel()} entries but the gradients have "
                f"{jacobian.shape[1]}; use one Bloop per parameter set"
            )

    def aggregate(self, jacobian: Tensor, context: Context) -> Tensor:
        main, aux = jacobian[0], jacobian[1]
        if self.main_ema is None:
            self.main_ema = main.clone() if self.init == "grad" else torch.zeros_like(main)
        self.main_ema = self.main_ema.to(main)
        self.main_ema.lerp_(main, self.ema)
        self.steps += 1
        ratio = (self.main_ema @ aux) / (self.main_ema @ self.main_ema + self.eps)
        self._last = {"projection_ratio": float(ratio), "ema_cosine_main": float(
            (self.main_ema @ main) / (self.main_ema.norm() * main.norm()).clamp_min(1e-30))}
        return main + self.aux_weight * (aux - ratio * self.main_ema)

    def diagnostics(self) -> dict[str, Any]:
        return dict(self._last)

    def state_dict(self) -> dict[str, Any]:
        return {"main_ema": None if self.main_ema is None else self.main_ema.clone(), "steps": self.steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"main_ema", "steps"}:
            raise ValueError(f"Bloop state_dict must have keys ['main_ema', 'steps'], got {sorted(state_dict)}")
        ema = state_dict["main_ema"]
        if ema is not None and (not isinstance(ema, Tensor) or ema.ndim != 1):
            raise ValueError("state_dict['main_ema'] must be a 1-D tensor or None")
        self.main_ema = None if ema is None else ema.clone()
        self.steps = int(state_dict["steps"])

    def __repr__(self) -> str:
        return f"Bloop(aux_weight={self.aux_weight}, ema={self.ema}, init={self.init!r})"
