"""Cautious AdamW and Cautious Lion: the update masked where it disagrees in sign with the gradient.

Liang, Chen, Liu & Liu, "Cautious Optimizers: Improving Training with One Line of Code", arXiv:2411.16085;
official code https://github.com/kyleliang919/C-Optim (``c_adamw.py``, ``c_lion.py``).

    C-AdamW:  u <- cautious(m_hat / (sqrt(v_hat) + eps));  p <- p (1 - lr wd) - lr u
    C-Lion:   u <- cautious(sign(b1 m + (1 - b1) g));      p <- p (1 - lr wd) - lr u
    cautious: u <- u * phi * n / (sum(phi) + 1),  phi = 1[u * g > 0]                (per tensor)

``cautious`` (:mod:`gradkit.transforms.cautious`) wraps any transform; these recipes are AdamW and
Lion with it. Arguments and defaults are those of gradkit's AdamW and Lion. C-AdamW follows the
official code (the mask is taken of the momentum and applied before the division by the root, which
equals masking the quotient since the root is positive). Deviation: the official C-AdamW applies the
bias corrections as one ``step_size`` factor and eps outside them (torch.optim's form, here too).
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_adam, scale_by_learning_rate
from gradkit.transforms.cautious import cautious
from gradkit.transforms.sign_momentum import sign_momentum

__all__ = ["CautiousAdamW", "CautiousLion"]

_REFERENCE = ("Liang, Chen, Liu & Liu, Cautious Optimizers: Improving Training with One Line of Code, "
              "arXiv:2411.16085; https://github.com/kyleliang919/C-Optim")


@register_optimizer("cautious_adamw", summary="AdamW with the cautious mask (update zeroed where it opposes the gradient)",
                    reference=_REFERENCE)
class CautiousAdamW(Optimizer):
    """Cautious AdamW (C-AdamW).

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = gradkit.optim.CautiousAdamW([w], lr=0.1, weight_decay=0.0)
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.detach()  # both components agree with the gradient: scaled by n / (n + 1) = 2 / 3
        tensor([ 0.9333, -1.9333])
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, *, maximize=False,
                 nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            cautious(scale_by_adam(hp("betas"), hp("eps"))),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)


@register_optimizer("cautious_lion", summary="Lion with the cautious mask", reference=_REFERENCE)
class CautiousLion(Optimizer):
    """Cautious Lion (C-Lion); arguments and defaults of :class:`gradkit.optim.Lion`."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, maximize=False, nonfinite="raise",
                 state_dtype=None):
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            cautious(sign_momentum(hp("betas"))),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
