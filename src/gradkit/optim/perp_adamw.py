"""⊥AdamW: AdamW whose gradient is first projected orthogonally to the weights (⊥Grad).

Prieto, Barsbey, Mediano & Birdal, "Grokking at the Edge of Numerical Stability", ICLR 2025,
arXiv:2501.04697; official code https://github.com/LucasPrietoAl/grokking-at-the-edge-of-numerical-stability.

    g <- -g if maximize
    g <- g - (<g, w> / <w, w>) w   per tensor            (orthogonal_grad; * ||g_in|| / ||g|| if renormalize)
    u <- m_hat / (sqrt(v_hat) + eps) + wd * p            (scale_by_adam, decoupled decay)
    p <- p - lr * u

The projection comes before the moments, as in the paper (and the official ``OrthoGrad`` wrapper,
which rewrites ``p.grad`` before the base optimizer's step). The paper trains ⊥AdamW without weight
decay, hence ``weight_decay=0.0`` by default (not AdamW's 0.01). ``renormalize=True`` rescales the
projected gradient to the original norm, as the official wrapper does; the paper's equation does not.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_adam, scale_by_learning_rate
from gradkit.transforms.orthogonal_grad import orthogonal_grad

__all__ = ["PerpAdamW"]


@register_optimizer("perp_adamw", summary="AdamW on the gradient projected orthogonally to the weights (⊥Grad)",
                    reference="Prieto, Barsbey, Mediano & Birdal, Grokking at the Edge of Numerical Stability, "
                              "ICLR 2025, arXiv:2501.04697; "
                              "https://github.com/LucasPrietoAl/grokking-at-the-edge-of-numerical-stability")
class PerpAdamW(Optimizer):
    """⊥AdamW: ``orthogonal_grad`` then AdamW.

    Args:
        lr, betas, eps, weight_decay, amsgrad, maximize: as ``torch.optim.AdamW`` (``weight_decay`` 0 by default).
        renormalize: keep the norm of each tensor's gradient through the projection (official wrapper).
        nonfinite, state_dtype: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
        >>> opt = gradkit.optim.PerpAdamW([w], lr=0.1)
        >>> (w ** 2).sum().backward(); opt.step()  # the gradient 2w is purely radial: nothing moves
        >>> w.detach()
        tensor([3., 4.])
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 renormalize=False, maximize=False, nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        renormalize=renormalize, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            orthogonal_grad(renormalize=hp("renormalize")),
            scale_by_adam(hp("betas"), hp("eps"), hp("amsgrad")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
