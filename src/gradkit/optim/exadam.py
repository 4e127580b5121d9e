"""EXAdam: Adam with cross-moment debiasing, gradient acceleration and (optionally) a dynamic step size.

Adly, "EXAdam: The Power of Adaptive Cross-Moments", arXiv:2412.20302, 2024; official code
https://github.com/AhmedMostafa16/EXAdam.

    u <- s_t (m~ + g~) / (sqrt(v~) + eps)       (scale_by_exadam)
    p <- p (1 - lr wd) - lr u                   (decoupled decay, applied first as in the official code)

``dynamic_step_size=True`` is the paper's s_t = ln(sqrt(2 (t + 1))); the default follows the current
official code, which dropped it (s_t = 1). ``eps`` must be > 0: the official code also accepts 0, which
makes the debiasing terms 0 / 0 wherever a moment is exactly zero.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.exadam import scale_by_exadam

__all__ = ["EXAdam"]


@register_optimizer("exadam", summary="Adam with cross-moment debiasing and gradient acceleration (dynamic step size option)",
                    reference="Adly, EXAdam: The Power of Adaptive Cross-Moments, arXiv:2412.20302; "
                              "https://github.com/AhmedMostafa16/EXAdam")
class EXAdam(Optimizer):
    """EXAdam, matching the official code (same arguments and defaults) plus the paper's dynamic step size.

    Adam with debiased moments that cross-correct each other (see the module docstring) and, with
    ``dynamic_step_size=True``, the step size ``lr * ln(sqrt(2 (t + 1)))``.

    Args:
        lr, betas, eps, weight_decay: Adam's (decoupled decay, as the official code).
        dynamic_step_size: the paper's growing step size (removed from the current official code).
        maximize: maximise the objective instead.
        nonfinite, state_dtype, fused: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.randn(3, 2))
        >>> opt = gradkit.optim.EXAdam([w], lr=1e-3, dynamic_step_size=True)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, dynamic_step_size=False,
                 maximize=False, nonfinite="raise", state_dtype=None, fused=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, dynamic_step_size=dynamic_step_size,
                        maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            scale_by_exadam(hp("betas"), hp("eps"), hp("dynamic_step_size")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype,
                         fused=fused)
