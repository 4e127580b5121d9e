"""AdEMAMix: AdamW with a mixture of a fast and a slow EMA of the gradient.

Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", ICLR 2025,
arXiv:2409.03137; official code https://github.com/apple/ml-ademamix.

    u <- (m1_hat + alpha(t) m2) / (sqrt(nu_hat) + eps)          (scale_by_ademamix)
    p <- p - lr (u + wd p)                                       (decoupled decay, as AdamW)

Arguments and defaults are the official PyTorch code's (alpha=2.0; its optax version defaults to 5.0,
and the paper tunes alpha in 4..10 with warm-ups ``alpha_warmup = beta3_warmup = T``, the total
number of steps). The warm-ups are off by default (``None``); the paper recommends them for long runs.
With ``betas[0] == 0`` the fast EMA is not stored (state of two tensors instead of three).
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.ademamix import scale_by_ademamix

__all__ = ["AdEMAMix"]


@register_optimizer("ademamix", summary="Adam with a mixture of fast and slow gradient EMAs (alpha/beta3 warm-ups)",
                    reference="Pagliardini, Ablin & Grangier, The AdEMAMix Optimizer: Better, Faster, Older, ICLR 2025, "
                              "arXiv:2409.03137; https://github.com/apple/ml-ademamix")
class AdEMAMix(Optimizer):
    """AdEMAMix, matching the official PyTorch code (same arguments and defaults).

    Args:
        lr, eps, weight_decay: AdamW's (decoupled decay).
        betas: ``(b1, b2, b3)``: the fast EMA, the second moment, the slow EMA.
        alpha: weight of the slow EMA in the numerator.
        beta3_warmup, alpha_warmup: steps of the official schedulers' warm-ups of ``b3`` and ``alpha``
            (``None``: no warm-up).
        maximize: maximise the objective instead.
        nonfinite, state_dtype, fused: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.randn(3, 2))
        >>> opt = gradkit.optim.AdEMAMix([w], lr=1e-3, alpha=5.0, beta3_warmup=1000, alpha_warmup=1000)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999, 0.9999), alpha=2.0, beta3_warmup=None, alpha_warmup=None,
                 eps=1e-8, weight_decay=0.0, *, maximize=False, nonfinite="raise", state_dtype=None, fused=False):
        defaults = dict(lr=lr, betas=betas, alpha=alpha, beta3_warmup=beta3_warmup, alpha_warmup=alpha_warmup, eps=eps,
                        weight_decay=weight_decay, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            scale_by_ademamix(hp("betas"), hp("alpha"), hp("beta3_warmup"), hp("alpha_warmup"), hp("eps")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype,
                         fused=fused)
