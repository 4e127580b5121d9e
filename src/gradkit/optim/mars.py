"""MARS-AdamW: AdamW on the variance-reduced gradient of MARS.

Yuan, Liu, Wu, Zhou & Gu, "MARS: Unleashing the Power of Variance Reduction for Training Large Models",
arXiv:2411.10438; official code https://github.com/AGI-Arena/MARS (``mars_type="mars-adamw"``).

    c <- g + gamma b1 / (1 - b1) (g - g_prev);  c <- c / ||c|| if ||c|| > 1      (mars_correction)
    u <- m_hat / (sqrt(v_hat) + eps) of c                                        (scale_by_adam)
    p <- p (1 - lr wd) - lr u

Defaults are the official ones for matrices (lr=3e-3, betas=(0.95, 0.99), gamma=0.025). With
``optimize_1d=False`` (default) vectors get plain AdamW with the group's lr, betas and decay; the
official code gives them ``lr_1d``, ``betas_1d`` and ``weight_decay_1d`` instead, which is a second param
group here (``{"params": vectors, "lr": 3e-3, "betas": (0.9, 0.95), "weight_decay": 0.1}``).
The MARS-Lion and MARS-Shampoo variants are ``mars_correction`` before ``sign_momentum`` or an
orthogonalisation in a chain of one's own.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_adam, scale_by_learning_rate
from gradkit.transforms.mars import mars_correction

__all__ = ["MARS"]


@register_optimizer("mars", summary="MARS-AdamW: AdamW on a variance-reduced (previous-gradient corrected) gradient",
                    reference="Yuan et al., MARS: Unleashing the Power of Variance Reduction for Training Large Models, "
                              "arXiv:2411.10438; https://github.com/AGI-Arena/MARS")
class MARS(Optimizer):
    """MARS-AdamW (approximate form)."""

    def __init__(self, params, lr=3e-3, betas=(0.95, 0.99), eps=1e-8, weight_decay=0.0, gamma=0.025,
                 optimize_1d=False, amsgrad=False, *, maximize=False, nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, gamma=gamma, optimize_1d=optimize_1d,
                        amsgrad=amsgrad, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            mars_correction(hp("gamma"), hp("betas"), hp("optimize_1d")),
            scale_by_adam(hp("betas"), hp("eps"), hp("amsgrad")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
