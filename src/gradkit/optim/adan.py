"""Adan: adaptive Nesterov momentum with a gradient-difference term and proximal weight decay.

Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
Models", IEEE TPAMI 2024, arXiv:2208.06677; official code https://github.com/sail-sg/Adan.

    g <- g * min(1, max_grad_norm / (||g|| + 1e-6))            (max_grad_norm > 0)
    u <- scale_by_adan(g)                                       (three moments, bias-corrected)
    p <- (p - lr u) / (1 + lr wd)                               (default: proximal decay)
    p <- p (1 - lr wd) - lr u                                   (no_prox=True: decoupled decay)

Departures, all documented: the paper's betas weight the new value (paper 0.02, 0.08, 0.01 are the
code's 0.98, 0.92, 0.99); the code (followed here) adds bias corrections the paper does not have.
Gradient clipping reuses ``clip_by_global_norm``, whose norm is per param group and whose epsilon is
1e-6, where the official code takes the norm over all groups and adds the group's ``eps``; with one
group the two differ by that epsilon only. ``restart()`` is the official ``restart_opt()``.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, clip_by_global_norm, flip_sign, scale_by_learning_rate
from gradkit.transforms.adan import scale_by_adan
from gradkit.transforms.proximal_decay import proximal_decay
from gradkit.transforms._checks import non_negative

__all__ = ["Adan"]


@register_optimizer("adan", summary="adaptive Nesterov momentum: gradient, difference and squared moments, proximal decay",
                    reference="Xie, Zhou, Li, Lin & Yan, Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing "
                              "Deep Models, IEEE TPAMI 2024, arXiv:2208.06677; https://github.com/sail-sg/Adan")
class Adan(Optimizer):
    """Adan, with the official code's arguments and defaults (``foreach`` is not taken: always multi-tensor).

    Args:
        betas: (b1, b2, b3) for the gradient, gradient-difference and squared-correction moments.
        weight_decay: decay strength; proximal by default, decoupled with ``no_prox=True``.
        max_grad_norm: clip the group's gradient norm to this value first (0 disables; fixed at construction,
            as the official code reads it from the defaults).

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.randn(3, 2))
        >>> opt = gradkit.optim.Adan([w], lr=1e-3, weight_decay=0.02)
    """

    def __init__(self, params, lr=1e-3, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.0, max_grad_norm=0.0,
                 no_prox=False, *, maximize=False, nonfinite="raise", state_dtype=None, fused=False):
        non_negative(max_grad_norm, None, "max_grad_norm")  # 0 disables clipping
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, no_prox=no_prox, maximize=maximize)
        clip = [clip_by_global_norm(float(max_grad_norm))] if max_grad_norm > 0 else []
        transform = chain(
            flip_sign(hp("maximize")),
            *clip,
            scale_by_adan(hp("betas"), hp("eps")),
            add_decayed_weights(hp("weight_decay"), enabled=hp("no_prox")),
            scale_by_learning_rate(hp("lr")),
            proximal_decay(hp("weight_decay"), hp("lr"), enabled=~hp("no_prox")),
        )
        self.max_grad_norm = float(max_grad_norm)
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype,
                         fused=fused)

    @torch.no_grad()
    def restart(self) -> None:
        """Zero the moments and the step counts, so the next step starts afresh (the official ``restart_opt``)."""
        for state in self.state.values():
            for value in state.values():
                if torch.is_tensor(value):
                    value.zero_()
            if "step" in state:
                state["step"] = 0
