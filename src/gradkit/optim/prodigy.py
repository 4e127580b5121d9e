"""Prodigy: parameter-free Adam (the step size is estimated; lr is a multiplier, 1.0 by default).

Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner", ICML 2024,
arXiv:2306.06101; official code https://github.com/konstmish/prodigy (package ``prodigyopt``).

    p <- p - lr d_k bc_k (m / (sqrt(v) + d_{k+1} eps) + wd p)        (see scale_by_prodigy for d_k)

Arguments and defaults are the official ones (``decouple=True``: AdamW-style decay; ``False``: the
decay is added to the gradient). One estimate per param group (see the transform's deviations).
"""
from __future__ import annotations

import math

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.prodigy import scale_by_prodigy

__all__ = ["Prodigy"]


@register_optimizer("prodigy", summary="Prodigy: Adam with a parameter-free step-size estimate (lr=1 by default)",
                    reference="Mishchenko & Defazio, Prodigy: An Expeditiously Adaptive Parameter-Free Learner, ICML "
                              "2024, arXiv:2306.06101; https://github.com/konstmish/prodigy")
class Prodigy(Optimizer):
    """Prodigy, matching ``prodigyopt.Prodigy`` for one param group."""

    def __init__(self, params, lr=1.0, betas=(0.9, 0.999), beta3=None, eps=1e-8, weight_decay=0.0, decouple=True,
                 use_bias_correction=False, safeguard_warmup=False, d0=1e-6, d_coef=1.0, growth_rate=math.inf, *,
                 maximize=False, nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, betas=betas, beta3=beta3, eps=eps, weight_decay=weight_decay, decouple=decouple,
                        use_bias_correction=use_bias_correction, safeguard_warmup=safeguard_warmup, d0=d0,
                        d_coef=d_coef, growth_rate=growth_rate, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            add_decayed_weights(hp("weight_decay"), enabled=~hp("decouple")),
            scale_by_prodigy(hp("lr"), hp("betas"), hp("beta3"), hp("eps"), hp("weight_decay"), hp("decouple"), hp("d0"),
                             hp("d_coef"), hp("growth_rate"), hp("use_bias_correction"), hp("safeguard_warmup")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
