"""AdaBelief: Adam whose step adapts to the belief in the gradient, (g - m)^2, instead of g^2.

Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris & Duncan, "AdaBelief Optimizer: Adapting
Stepsizes by the Belief in Observed Gradients", NeurIPS 2020, arXiv:2010.07468; official code
https://github.com/juntang-zhuang/Adabelief-Optimizer (package ``adabelief-pytorch``).

    g <- g + wd * p                              (weight_decouple=False: coupled L2)
    u <- scale_by_belief(g)                      (rectify: RAdam's rectified step; amsgrad option)
    p <- p * (1 - lr * wd)  or  p * (1 - wd)      (weight_decouple=True; fixed_decay=True)
    p <- p - lr * u

Defaults are the official package's (0.2): eps=1e-16, weight_decouple=True, rectify=True. The
paper's Algorithm 1 has neither the rectification nor decoupled decay and writes eps once inside
s_t; ``rectify=False, weight_decouple=False`` is closest to it (eps still enters twice, as in the
code). The official optimizer mutates ``p.grad`` for coupled decay; this one leaves it unchanged.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.belief import scale_by_belief
from gradkit.transforms.decoupled_decay import decoupled_decay

__all__ = ["AdaBelief"]


@register_optimizer("adabelief", summary="Adam adapting to the belief (g - m)^2 (rectify, amsgrad, decoupled decay)",
                    reference="Zhuang et al., AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients, "
                              "NeurIPS 2020, arXiv:2010.07468; https://github.com/juntang-zhuang/Adabelief-Optimizer")
class AdaBelief(Optimizer):
    """AdaBelief, matching ``adabelief_pytorch.AdaBelief`` (same arguments and defaults, no printing).

    ``s <- b2 s + (1 - b2) (g - m)^2 + eps;  p <- p - lr * m_hat / (sqrt(s_hat) + eps)`` (see the module).

    Args:
        lr, betas, eps, weight_decay, amsgrad: Adam's (eps enters inside ``s`` and outside the root).
        weight_decouple: decoupled decay (default, official); ``False`` is coupled L2.
        fixed_decay: decay by ``wd`` instead of ``lr * wd`` (with ``weight_decouple``).
        rectify: RAdam's variance rectification (default, official); degenerated_to_sgd: take SGD
            steps while the variance is not tractable.
        maximize: maximise the objective instead.
        nonfinite, state_dtype, fused: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.randn(3, 2))
        >>> opt = gradkit.optim.AdaBelief([w], lr=1e-3, weight_decay=1e-2)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-16, weight_decay=0.0, amsgrad=False,
                 weight_decouple=True, fixed_decay=False, rectify=True, degenerated_to_sgd=True, *,
                 maximize=False, nonfinite="raise", state_dtype=None, fused=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        weight_decouple=weight_decouple, fixed_decay=fixed_decay, rectify=rectify,
                        degenerated_to_sgd=degenerated_to_sgd, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            add_decayed_weights(hp("weight_decay"), enabled=~hp("weight_decouple")),
            scale_by_belief(hp("betas"), hp("eps"), hp("amsgrad"), hp("rectify"), hp("degenerated_to_sgd")),
            scale_by_learning_rate(hp("lr")),
            decoupled_decay(hp("weight_decay"), hp("lr"), fixed=hp("fixed_decay"), enabled=hp("weight_decouple")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype,
                         fused=fused)
