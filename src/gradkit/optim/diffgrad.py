"""diffGrad: Adam whose step is damped where the gradient changes little between iterations.

Dubey, Chakraborty, Roy, Mukherjee, Singh & Chaudhuri, "diffGrad: An Optimization Method for
Convolutional Neural Networks", IEEE TNNLS 31(11), 2020, arXiv:1909.11015; official code
https://github.com/shivram1987/diffGrad (``diffGrad_v2.py``, the fixed version).

    g <- g + wd * p                          (coupled L2, the official weight_decay)
    u <- scale_by_diffgrad(g)                (friction sigmoid(|g_{t-1} - g_t|) on the first moment)
    p <- p (1 - lr wd) - lr u                (decoupled_weight_decay=True instead, as AdamW)
    p <- p - lr u
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.diffgrad import scale_by_diffgrad

__all__ = ["DiffGrad"]


@register_optimizer("diffgrad", summary="Adam with a friction coefficient from the change of the gradient",
                    reference="Dubey et al., diffGrad: An Optimization Method for Convolutional Neural Networks, IEEE TNNLS "
                              "2020, arXiv:1909.11015; https://github.com/shivram1987/diffGrad")
class DiffGrad(Optimizer):
    """diffGrad, matching the official ``diffGrad_v2.py`` (same arguments and defaults).

    Adam's step times the friction ``xi = sigmoid(|g_{t-1} - g_t|)``, with the bias corrections in the
    step size as the official code: ``p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * xi * m / (sqrt(v) + eps)``.

    Args:
        lr, betas, eps, weight_decay: Adam's; the decay is coupled L2 unless ``decoupled_weight_decay``.
        maximize: maximise the objective instead.
        nonfinite, state_dtype, fused: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.randn(3, 2))
        >>> opt = gradkit.optim.DiffGrad([w], lr=1e-3)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *,
                 decoupled_weight_decay=False, maximize=False, nonfinite="raise", state_dtype=None, fused=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            add_decayed_weights(hp("weight_decay"), enabled=~hp("decoupled_weight_decay")),
            scale_by_diffgrad(hp("betas"), hp("eps")),
            add_decayed_weights(hp("weight_decay"), enabled=hp("decoupled_weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype,
                         fused=fused)
