"""Grams: Gradient Descent with Adaptive Momentum Scaling.

Cao, Li & Song, "Grams: Gradient Descent with Adaptive Momentum Scaling", arXiv:2412.17107 (ICLR 2025
SCOPE workshop); official code https://github.com/Gunale0926/Grams.

    g <- -g if maximize
    u <- sign(g) * |Adam update|          (scale_by_grams; eps placement as the official code)
    u <- u + wd * p                       (decoupled weight decay)
    p <- p - lr * u
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.grams import scale_by_grams

__all__ = ["Grams"]


@register_optimizer("grams", summary="Adam's update magnitude with the current gradient's sign; decoupled weight decay",
                    reference="Cao, Li & Song, Grams: Gradient Descent with Adaptive Momentum Scaling, arXiv:2412.17107; "
                              "https://github.com/Gunale0926/Grams")
class Grams(Optimizer):
    """Grams, with the official code's arguments and defaults.

    Args:
        lr, betas, weight_decay: as ``torch.optim.AdamW`` (weight decay is decoupled: ``p *= 1 - lr * wd``).
        eps: added to ``sqrt(v)`` (default 1e-6, the official code's).
        correct_bias: bias-correct the moments (official code option; default True).
        eps_placement: ``"official"`` (default) adds ``eps`` to the uncorrected ``sqrt(v_t)`` and applies
            ``sqrt(1 - b2^t) / (1 - b1^t)`` to the step, as the official code; ``"paper"`` uses the paper's
            ``m_hat / (sqrt(v_hat) + eps)`` (pytorch_optimizer.Grams computes this one).
        maximize: maximize the objective.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = gradkit.optim.Grams([w], lr=0.1)
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.detach()
        tensor([ 0.9000, -1.9000])
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, correct_bias=True, *,
                 eps_placement="official", maximize=False, nonfinite="raise", state_dtype=None, fused=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, correct_bias=correct_bias,
                        eps_placement=eps_placement, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            scale_by_grams(hp("betas"), hp("eps"), hp("correct_bias"), hp("eps_placement")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype,
                         fused=fused)
