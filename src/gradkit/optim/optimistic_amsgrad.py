"""Optimistic AMSGrad (OPT-AMSGrad): AMSGrad with a half-step along a predicted next gradient.

Wang, Li, Chen & Li, "An Optimistic Acceleration of AMSGrad for Nonconvex Optimization", ACML 2021,
arXiv:1903.01435 (Algorithms 2 and 3). No official code is published with the paper.

    g <- -g if maximize;   g <- g + wd * p                          (coupled L2, 0 by default)
    theta, v, vhat <- AMSGrad's moments (v_0 = vhat_0 = eps, no bias correction)
    m <- RMPE extrapolation of the last r + 1 gradients (or g with predictor="last")
    d' = (b1 theta_prev + (1 - b1) m) / sqrt(vhat);   p <- p - lr (theta / sqrt(vhat) + d' - d);   d <- d'

The deviations from the paper (the learning rate of the second half-step, the normalised RMPE
regularisation, the prediction before ``r + 1`` gradients) are listed in
:mod:`gradkit.transforms.optimistic_amsgrad`.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.optimistic_amsgrad import scale_by_optimistic_amsgrad

__all__ = ["OptimisticAMSGrad"]


@register_optimizer("optimistic_amsgrad",
                    summary="AMSGrad plus a half-step along an extrapolated guess of the next gradient (OPT-AMSGrad)",
                    reference="Wang, Li, Chen & Li, An Optimistic Acceleration of AMSGrad for Nonconvex "
                              "Optimization, arXiv:1903.01435")
class OptimisticAMSGrad(Optimizer):
    """OPT-AMSGrad (Algorithm 2 of arXiv:1903.01435) with the RMPE gradient prediction (Algorithm 3).

    Args:
        lr: learning rate ``eta``.
        betas: ``(b1, b2)``, decay rates of the first and second moments.
        eps: initial value of ``v`` and ``vhat`` (the paper's ``v_0 = eps``).
        weight_decay: coupled L2 added to the gradient.
        history: ``r``, gradient differences used by the prediction.
        lam: RMPE's regularisation (relative to the largest eigenvalue of ``U^T U``).
        predictor: ``"rmpe"`` (the paper) or ``"last"`` (``m_{t+1} = g_t``).
        maximize, nonfinite, state_dtype: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = gradkit.optim.OptimisticAMSGrad([w], lr=0.1)
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.detach()
        tensor([ 0.3675, -1.3675])
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, history=5, lam=1e-8,
                 predictor="rmpe", maximize=False, nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, history=history, lam=lam,
                        predictor=predictor, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_optimistic_amsgrad(hp("betas"), hp("eps"), hp("history"), hp("lam"), hp("predictor")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
