"""AdamP and SGDP: Adam and SGD whose updates of scale-invariant weights are projected to be tangent.

Heo, Chun, Oh, Han, Yun, Kim, Uh & Ha, "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
Scale-invariant Weights", ICLR 2021, arXiv:2006.08217; official code https://github.com/clovaai/AdamP
(package ``adamp``).

    AdamP:  u <- Adam update (nesterov: numerator b1 m + (1 - b1) g)      (scale_by_nesterov_adam)
    SGDP:   u <- heavy-ball momentum from a zero buffer, dampening, nesterov (heavy_ball)
    both:   if the weight looks scale-invariant (cos(g, w) < delta / sqrt(dim) per channel, else per layer):
                u <- u - <w_hat, u> w_hat,  decay <- wd_ratio * decay                (project_radial)
            p <- p * (1 - lr * wd * ratio [/ (1 - momentum) for SGDP]) - lr * u

Only tensors with two or more dimensions are projected (as in the official code); the weight decay of
every tensor is decoupled.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import flip_sign, scale_by_learning_rate
from gradkit.transforms.heavy_ball import heavy_ball
from gradkit.transforms.nesterov_adam import scale_by_nesterov_adam
from gradkit.transforms.radial import project_radial

__all__ = ["AdamP", "SGDP"]

_REFERENCE = ("Heo, Chun, Oh, Han, Yun, Kim, Uh & Ha, AdamP: Slowing Down the Slowdown for Momentum Optimizers "
              "on Scale-invariant Weights, ICLR 2021, arXiv:2006.08217; https://github.com/clovaai/AdamP")


@register_optimizer("adamp", summary="Adam with radial projection of updates of scale-invariant weights",
                    reference=_REFERENCE)
class AdamP(Optimizer):
    """AdamP, matching the official ``adamp.AdamP`` (same arguments and defaults).

    Args:
        lr, betas, eps: Adam's. ``eps`` is also the official code's epsilon of the cosine and of the
            weight norms in the projection.
        weight_decay: decoupled weight decay; multiplied by ``wd_ratio`` on projected weights.
        delta: threshold of the scale-invariance test, ``|cos(g, w)| < delta / sqrt(view size)``.
        wd_ratio: factor on the weight decay of projected weights.
        nesterov: use the look-ahead numerator ``b1 m_t + (1 - b1) g_t``.
        maximize: maximise the objective instead.

    Example:
        >>> import torch, gradkit
        >>> conv = torch.nn.Conv2d(3, 4, 3)
        >>> opt = gradkit.optim.AdamP(conv.parameters(), lr=1e-3, weight_decay=1e-2)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, delta=0.1, wd_ratio=0.1,
                 nesterov=False, *, maximize=False, nonfinite="raise", state_dtype=None, fused=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, delta=delta, wd_ratio=wd_ratio,
                        nesterov=nesterov, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            project_radial(scale_by_nesterov_adam(hp("betas"), hp("eps"), hp("nesterov")), delta=hp("delta"),
                           wd_ratio=hp("wd_ratio"), eps=hp("eps"), weight_decay=hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype,
                         fused=fused)


@register_optimizer("sgdp", summary="SGD with radial projection of updates of scale-invariant weights",
                    reference=_REFERENCE)
class SGDP(Optimizer):
    """SGDP, matching the official ``adamp.SGDP``: SGD with momentum whose step on a scale-invariant
    weight is projected onto the tangent space of the weight (the radial part removed) and whose
    weight decay is then multiplied by ``wd_ratio``.

    Args:
        lr, momentum, dampening, weight_decay, nesterov: SGD's (weight decay divided by ``1 - momentum``).
        eps, delta, wd_ratio: AdamP's projection: a weight is scale-invariant when the cosine between it
            and the gradient is below ``delta / sqrt(dim)``; its decay is multiplied by ``wd_ratio``.
        project_momentum: see below.
        maximize, nonfinite, state_dtype, fused: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = gradkit.optim.SGDP([w], lr=0.1, momentum=0.9)
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.detach()
        tensor([ 0.8000, -1.6000])

    The official SGDP has no default ``lr``; here it is 1e-3 like gradkit's SGD. Its momentum buffer
    starts at zero and is damped from the first step (``heavy_ball``), and its weight decay is divided
    by ``1 - momentum``.

    ``project_momentum=True`` (default) follows the official code, whose in-place projection also
    projects the momentum buffer itself when ``nesterov=False``; ``False`` is the paper's Algorithm,
    which projects only the step and keeps the buffer as accumulated.
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, eps=1e-8,
                 delta=0.1, wd_ratio=0.1, *, project_momentum=True, maximize=False, nonfinite="raise",
                 state_dtype=None, fused=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        eps=eps, delta=delta, wd_ratio=wd_ratio, project_momentum=project_momentum, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            project_radial(heavy_ball(hp("momentum"), hp("dampening"), hp("nesterov")), delta=hp("delta"),
                           wd_ratio=hp("wd_ratio"), eps=hp("eps"), weight_decay=hp("weight_decay"),
                           decay_momentum=hp("momentum"), project_state=hp("project_momentum")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype,
                         fused=fused)
