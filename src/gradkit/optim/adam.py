"""Adam and AdamW as chains of gradkit transforms, numerically matching torch.optim.

Adam: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, arXiv:1412.6980.
AdamW: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, arXiv:1711.05101;
official code https://github.com/loshchil/AdamW-and-SGDW.

    g <- -g if maximize;   g <- g + wd * p               (Adam: coupled L2)
    u <- m_hat / (sqrt(v_hat) + eps)                      (scale_by_adam, AMSGrad optional)
    u <- u + wd * p                                       (AdamW: decoupled)
    p <- p - lr * u

Arguments and defaults are torch.optim's; ``foreach``/``capturable``/``differentiable`` are not taken
(gradkit always runs multi-tensor). ``fused=True`` compiles the whole step into one program
(:mod:`gradkit.core.fused`) on any device, rather than selecting hand-written kernels.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_adam, scale_by_learning_rate

__all__ = ["Adam", "AdamW"]


def adam_chain():
    return chain(
        flip_sign(hp("maximize")),
        add_decayed_weights(hp("weight_decay"), enabled=~hp("decoupled_weight_decay")),
        scale_by_adam(hp("betas"), hp("eps"), hp("amsgrad")),
        add_decayed_weights(hp("weight_decay"), enabled=hp("decoupled_weight_decay")),
        scale_by_learning_rate(hp("lr")),
    )


@register_optimizer("adam", summary="Adam (coupled L2 weight decay; AMSGrad option)",
                    reference="Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015, arXiv:1412.6980")
class Adam(Optimizer):
    """Adam, matching ``torch.optim.Adam`` (same arguments, same numbers to float rounding).

    ``m, v <- EMAs of g, g^2;  p <- p - lr * m_hat / (sqrt(v_hat) + eps)``, with ``g + wd * p`` as the
    gradient (coupled L2) unless ``decoupled_weight_decay=True``.

    Args:
        lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay: as ``torch.optim.Adam``.
        nonfinite, state_dtype, fused: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = gradkit.optim.Adam([w], lr=0.1)
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.detach()
        tensor([ 0.9000, -1.9000])
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False, nonfinite="raise", state_dtype=None, fused=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, adam_chain(), defaults, nonfinite=nonfinite, state_dtype=state_dtype,
                         fused=fused)


@register_optimizer("adamw", summary="Adam with decoupled weight decay",
                    reference="Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019, arXiv:1711.05101; "
                              "https://github.com/loshchil/AdamW-and-SGDW")
class AdamW(Optimizer):
    """AdamW, matching ``torch.optim.AdamW`` (same arguments, same numbers to float rounding).

    ``u = m_hat / (sqrt(v_hat) + eps) + weight_decay * p;  p <- p - lr * u``: Adam's moments with the
    decay decoupled from them (the default ``weight_decay=0.01`` is torch's).

    Args:
        lr, betas, eps, weight_decay, amsgrad, maximize: as ``torch.optim.AdamW``.
        nonfinite: ``"raise"`` (default), ``"skip"`` or ``"ignore"`` a step whose gradients are not finite.
        state_dtype: dtype of the moments (default: float32 for low-precision params, else the param's), or
            how they are stored between steps: ``"bfloat16" | "bfloat16+ecc" | "int8" | "int4"``
            (:mod:`gradkit.core.storage`).
        fused: compile the whole step into one program (:mod:`gradkit.core.fused`).

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = gradkit.optim.AdamW([w], lr=0.1)
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.detach()
        tensor([ 0.8990, -1.8980])
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, nonfinite="raise", state_dtype=None, fused=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=True)
        super().__init__(params, adam_chain(), defaults, nonfinite=nonfinite, state_dtype=state_dtype,
                         fused=fused)
