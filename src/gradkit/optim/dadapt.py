"""D-Adapt Adam: parameter-free Adam (the step size is estimated; lr is a multiplier, 1.0 by default).

Defazio & Mishchenko, "Learning-Rate-Free Learning by D-Adaptation", ICML 2023, arXiv:2301.07733;
official code https://github.com/facebookresearch/dadaptation (package ``dadaptation``, ``DAdaptAdam``).

    p <- p - lr (m / (sqrt(v) + eps) + wd d_k bc_k p)       (m carries d_k bc_k; see scale_by_dadapt_adam)

Arguments and defaults are the official ones (``decouple=False``: the decay is added to the gradient).
"""
from __future__ import annotations

import math

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.dadapt import scale_by_dadapt_adam

__all__ = ["DAdaptAdam"]


@register_optimizer("dadapt_adam", summary="D-Adaptation Adam: parameter-free step size (lr=1 by default)",
                    reference="Defazio & Mishchenko, Learning-Rate-Free Learning by D-Adaptation, ICML 2023, "
                              "arXiv:2301.07733; https://github.com/facebookresearch/dadaptation")
class DAdaptAdam(Optimizer):
    """D-Adapt Adam, matching ``dadaptation.DAdaptAdam`` for one param group and a constant lr."""

    def __init__(self, params, lr=1.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decouple=False,
                 use_bias_correction=False, d0=1e-6, growth_rate=math.inf, *, maximize=False, nonfinite="raise",
                 state_dtype=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decouple=decouple,
                        use_bias_correction=use_bias_correction, d0=d0, growth_rate=growth_rate, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            add_decayed_weights(hp("weight_decay"), enabled=~hp("decouple")),
            scale_by_dadapt_adam(hp("lr"), hp("betas"), hp("eps"), hp("weight_decay"), hp("decouple"), hp("d0"),
                                 hp("growth_rate"), hp("use_bias_correction")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
