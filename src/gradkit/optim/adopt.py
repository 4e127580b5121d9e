"""ADOPT: Adam with the second moment of the previous step and momentum of the normalised gradient.

Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta_2 with the Optimal Rate", NeurIPS
2024, arXiv:2411.02853; official code https://github.com/iShohei220/adopt (package ``torch-adopt``).

    t = 1:  v <- g^2 (no step)
    t > 1:  m <- b1 m + (1 - b1) clip(g / max(sqrt(v), eps), (t - 1)^(1/4));  v <- b2 v + (1 - b2) g^2
            p <- p (1 - lr wd) - lr m            (decouple=True; else g <- g + wd p first)

Arguments and defaults are the official ones (``clip_lambda`` is ``clip_exponent``: the bound is
``(t - 1) ** clip_exponent``, ``None`` for no clipping). The first step moves nothing, decay included.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.adopt import scale_by_adopt, skip_first_step

__all__ = ["ADOPT"]


@register_optimizer("adopt", summary="ADOPT: Adam-like, converges for any beta2 (previous-step second moment)",
                    reference="Taniguchi et al., ADOPT: Modified Adam Can Converge with Any beta_2 with the Optimal "
                              "Rate, NeurIPS 2024, arXiv:2411.02853; https://github.com/iShohei220/adopt")
class ADOPT(Optimizer):
    """ADOPT, matching the official ``adopt.ADOPT``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.9999), eps=1e-6, clip_exponent=0.25, weight_decay=0.0,
                 decouple=False, *, maximize=False, nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, clip_exponent=clip_exponent, weight_decay=weight_decay,
                        decouple=decouple, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            add_decayed_weights(hp("weight_decay"), enabled=~hp("decouple")),
            scale_by_adopt(hp("betas"), hp("eps"), hp("clip_exponent")),
            add_decayed_weights(hp("weight_decay"), enabled=hp("decouple")),
            skip_first_step(),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
