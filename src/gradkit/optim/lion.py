"""Lion (EvoLved Sign Momentum): the sign of an interpolated momentum, with decoupled weight decay.

Chen, Liang, Huang, Real, Wang, Pham, Dong, Luong, Hsieh, Lu & Le, "Symbolic Discovery of
Optimization Algorithms", NeurIPS 2023, arXiv:2302.06675; official code
https://github.com/google/automl/tree/master/lion (``lion-pytorch`` is a close port).

    u <- sign(b1 m + (1 - b1) g);   m <- b2 m + (1 - b2) g     (sign_momentum)
    p <- p (1 - lr wd) - lr u

Defaults are the official ones (lr=1e-4, betas=(0.9, 0.99), weight_decay=0); the paper advises an
lr 3-10x smaller and a weight decay 3-10x larger than AdamW's. State: one tensor per parameter.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.sign_momentum import sign_momentum

__all__ = ["Lion"]


@register_optimizer("lion", summary="sign of an interpolated momentum with decoupled decay (one state tensor)",
                    reference="Chen et al., Symbolic Discovery of Optimization Algorithms, NeurIPS 2023, arXiv:2302.06675; "
                              "https://github.com/google/automl/tree/master/lion")
class Lion(Optimizer):
    """Lion, matching the official PyTorch code (same arguments and defaults).

    ``u = sign(b1 m + (1 - b1) g);  m <- b2 m + (1 - b2) g;  p <- p (1 - lr wd) - lr u``.

    Args:
        lr: step size (default 1e-4; the paper advises 3-10x smaller than AdamW's).
        betas: ``(b1, b2)``, the interpolation and the momentum factors.
        weight_decay: decoupled (3-10x larger than AdamW's, per the paper).
        maximize: maximise the objective instead.
        nonfinite, state_dtype, fused: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = gradkit.optim.Lion([w], lr=0.1)
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.detach()
        tensor([ 0.9000, -1.9000])
    """

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, maximize=False, nonfinite="raise",
                 state_dtype=None, fused=False):
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            sign_momentum(hp("betas")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype,
                         fused=fused)
