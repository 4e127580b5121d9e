"""SGD with momentum, dampening, Nesterov and weight decay, numerically matching torch.optim.SGD.

Nesterov momentum as in Sutskever et al., "On the importance of initialization and momentum in deep
learning", ICML 2013 (torch.optim.SGD's formulation):

    g <- -g if maximize;  g <- g + wd * p;  b <- momentum * b + (1 - dampening) * g  (b_1 = g)
    u <- g + momentum * b (nesterov) or b;  p <- p - lr * u
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate, trace

__all__ = ["SGD"]


def sgd_chain():
    return chain(
        flip_sign(hp("maximize")),
        add_decayed_weights(hp("weight_decay")),
        trace(hp("momentum"), hp("dampening"), hp("nesterov")),
        scale_by_learning_rate(hp("lr")),
    )


@register_optimizer("sgd", summary="stochastic gradient descent with momentum, dampening, Nesterov, weight decay",
                    reference="Sutskever, Martens, Dahl & Hinton, On the importance of initialization and momentum in deep learning, ICML 2013")
class SGD(Optimizer):
    """SGD, matching ``torch.optim.SGD`` (same arguments and defaults).

    ``b <- momentum * b + (1 - dampening) * (g + weight_decay * p)`` (``b = g`` at the first step);
    ``p <- p - lr * (g + momentum * b if nesterov else b)``.

    Args:
        lr, momentum, dampening, weight_decay, nesterov, maximize: as ``torch.optim.SGD``.
        nonfinite, state_dtype, fused: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = gradkit.optim.SGD([w], lr=0.1, momentum=0.9)
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.detach()
        tensor([ 0.8000, -1.6000])
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False, nonfinite="raise", state_dtype=None, fused=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, sgd_chain(), defaults, nonfinite=nonfinite, state_dtype=state_dtype,
                         fused=fused)
