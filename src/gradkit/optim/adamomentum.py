"""AdaMomentum: Adam with the second moment of the momentum.

Wang, Kang, Qin, Wang, Xu, Zhang & Fu, "Rethinking Adam: A Twofold Exponential Moving Average
Approach", arXiv:2106.11514 (2021). No official code is published; this is the paper's Algorithm 1.

    g <- -g if maximize;  g <- g + wd * p                       (coupled L2, default)
    m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) m^2 + eps     (scale_by_adamomentum)
    u <- (m / (1 - b1^t)) / sqrt(v / (1 - b2^t))
    u <- u + wd * p                                              (decoupled_weight_decay=True instead)
    p <- p - lr * u
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.adamomentum import scale_by_adamomentum

__all__ = ["AdaMomentum"]


@register_optimizer("adamomentum", summary="Adam whose second moment averages the squared momentum (AdaMomentum)",
                    reference="Wang, Kang, Qin, Wang, Xu, Zhang & Fu, Rethinking Adam: A Twofold Exponential Moving "
                              "Average Approach, arXiv:2106.11514")
class AdaMomentum(Optimizer):
    """AdaMomentum with ``torch.optim.Adam``-style arguments: Adam with the second moment taken of the
    momentum instead of the gradient, ``m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) m^2 + eps;
    p <- p - lr * m_hat / sqrt(v_hat)``.

    Args:
        lr, betas, weight_decay, amsgrad, maximize: as ``torch.optim.Adam``.
        eps: added inside the second-moment average (see below).
        decoupled_weight_decay: AdamW-style decay instead of coupled L2.
        nonfinite, state_dtype, fused: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = gradkit.optim.AdaMomentum([w], lr=0.01)
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.detach()
        tensor([ 0.9000, -1.9000])

    ``eps`` (default 1e-8) is added inside the second-moment average at every step, as in the paper's
    Algorithm 1 (not to ``sqrt(v)`` as in Adam). ``weight_decay`` is coupled L2 by default (as
    ``torch.optim.Adam``); ``decoupled_weight_decay=True`` makes it AdamW-style. ``amsgrad`` uses the
    running maximum of the second moment.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 decoupled_weight_decay=False, maximize=False, nonfinite="raise", state_dtype=None, fused=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            add_decayed_weights(hp("weight_decay"), enabled=~hp("decoupled_weight_decay")),
            scale_by_adamomentum(hp("betas"), hp("eps"), hp("amsgrad")),
            add_decayed_weights(hp("weight_decay"), enabled=hp("decoupled_weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype,
                         fused=fused)
