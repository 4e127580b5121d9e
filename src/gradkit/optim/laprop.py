"""LaProp: momentum of the RMS-normalised gradient, with decoupled weight decay.

Ziyin, Wang & Ueda, "LaProp: Separating Momentum and Adaptivity in Adam", arXiv:2002.04839; official code
https://github.com/Z-T-WANG/LaProp-Optimizer.

    v <- b2 v + (1 - b2) g^2;   m <- b1 m + (1 - b1) g / (sqrt(v / (1 - b2^t)) + eps)
    p <- p (1 - lr wd) - lr m / (1 - b1^t)

Defaults are the official ones (lr=4e-4, betas=(0.9, 0.999), eps=1e-15). See
:mod:`gradkit.transforms.laprop` for the lr placement; the decay here is AdamW's (``lr * wd``).
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.laprop import scale_by_laprop

__all__ = ["LaProp"]


@register_optimizer("laprop", summary="LaProp: momentum of the RMS-normalised gradient",
                    reference="Ziyin, Wang & Ueda, LaProp: Separating Momentum and Adaptivity in Adam, arXiv:2002.04839; "
                              "https://github.com/Z-T-WANG/LaProp-Optimizer")
class LaProp(Optimizer):
    """LaProp."""

    def __init__(self, params, lr=4e-4, betas=(0.9, 0.999), eps=1e-15, weight_decay=0.0, *, maximize=False,
                 nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            scale_by_laprop(hp("betas"), hp("eps")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
