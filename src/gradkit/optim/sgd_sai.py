"""SGD-SaI: SGD with momentum and per-tensor learning rates fixed by the g-SNR at initialization.

Xu, Xiang, Cai & Wen, "No More Adam: Learning Rate Scaling at Initialization is All
You Need", arXiv:2412.11768 (2024); official code https://github.com/AnonymousAlethiometer/SGD_SaI.

    g <- -g if maximize
    b <- g at the first step, then b <- momentum * b + (1 - momentum) * g     (trace with dampening = momentum)
    u <- scale_i * b,   scale_i = gsnr_i / max_j gsnr_j frozen at the first step   (scale_by_gsnr)
    p <- p * (1 - lr * wd) - lr * u                                                (decoupled decay)

State: one momentum buffer per parameter (half of AdamW's two moments) plus one scalar per tensor.
Follows official code v1.0.4 (the g-SNR version; ``estimator="sqrt_numel"`` is v1.1.0's
approximation). pytorch_optimizer.SGDSaI differs from the official code: it starts the momentum
buffer at zero, does not divide by the largest g-SNR, and uses the plain gradient norm for tensors
with one row or one dimension.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate, trace
from gradkit.transforms.gsnr import scale_by_gsnr
from gradkit.transforms._checks import unit_interval

__all__ = ["SGDSaI"]


@register_optimizer("sgdsai", summary="SGD with momentum, per-tensor lr scales from the gradient SNR at the first step",
                    reference="Xu, Xiang, Cai & Wen, No More Adam: Learning Rate Scaling at Initialization is All You "
                              "Need, arXiv:2412.11768; https://github.com/AnonymousAlethiometer/SGD_SaI")
class SGDSaI(Optimizer):
    """SGD-SaI with the official code's arguments and defaults (lr 1e-2, momentum 0.9, eps 1e-8, wd 1e-2).

    Each tensor's learning rate is scaled once, at its first step, by its gradient signal-to-noise ratio
    ``gsnr = |g|_2 / (std(g) + eps)`` (divided by the group's largest), then frozen:
    ``p <- p (1 - lr wd) - lr * gsnr * b``.

    Args:
        momentum: EMA factor of the momentum buffer (``b <- momentum * b + (1 - momentum) * g``, started at g).
        eps: added to the gradient's standard deviation in the g-SNR.
        weight_decay: decoupled (``p *= 1 - lr * wd``), as the official code.
        normalize: divide the g-SNRs by the largest one of the param group (official code v1.0.4; default).
        estimator: ``"gsnr"`` (default) or ``"sqrt_numel"`` (official code v1.1.0's approximation).
        maximize: maximize the objective.
        nonfinite, state_dtype: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = gradkit.optim.SGDSaI([w], lr=0.1)
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.detach()
        tensor([ 0.7990, -1.5980])
    """

    def __init__(self, params, lr=1e-2, momentum=0.9, eps=1e-8, weight_decay=1e-2, *, normalize=True,
                 estimator="gsnr", maximize=False, nonfinite="raise", state_dtype=None):
        unit_interval(momentum, None, "momentum")
        defaults = dict(lr=lr, momentum=momentum, eps=eps, weight_decay=weight_decay, normalize=normalize,
                        estimator=estimator, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            trace(hp("momentum"), dampening=hp("momentum")),
            scale_by_gsnr(hp("eps"), hp("normalize"), hp("estimator")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
