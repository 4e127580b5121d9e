"""Proximal weight decay: the step is followed by the proximal map of (wd / 2) ||p||^2.

Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
Models", IEEE TPAMI 2024, arXiv:2208.06677 (Algorithm 1); official code https://github.com/sail-sg/Adan::

    p <- (p - lr * u) / (1 + lr * wd)

It must come after ``scale_by_learning_rate``: it divides the whole pending update by ``1 + lr wd``
and adds ``-lr wd / (1 + lr wd) * params``, which is the same map with no extra pass over memory
beyond ``params *= 1 / (1 + lr wd)``.
"""
from __future__ import annotations

from gradkit.core.hyper import hp, resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean, non_negative
from gradkit.transforms.scale import ScaleByLearningRate

__all__ = ["proximal_decay", "ProximalDecay"]


@register_transform(
    "proximal_decay",
    summary="p <- (p - lr u) / (1 + lr wd): the proximal form of weight decay (Adan); goes after scale_by_learning_rate",
    reference="Xie et al., Adan, IEEE TPAMI 2024, arXiv:2208.06677; https://github.com/sail-sg/Adan",
)
class ProximalDecay(GradientTransform):
    """The proximal map of ``(wd / 2) ||p||^2`` after the step (Adan's weight decay).

    Args:
        weight_decay: the coefficient (>= 0).
        lr: the learning rate (the proximal step is ``lr * wd``).
        enabled: group flag (Adan's ``~no_prox``).

    ``p <- (p - lr u) / (1 + lr wd)``; must come after ``scale_by_learning_rate`` (checked when the chain
    is built). Reference: Xie et al., Adan, IEEE TPAMI 2024, arXiv:2208.06677; https://github.com/sail-sg/Adan.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([2.2]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_learning_rate(), gradkit.proximal_decay(1.0)),
    ...                         {"lr": 0.1})
    >>> w.grad = torch.tensor([0.0]); opt.step(); round(w.item(), 4)  # 2.2 / 1.1
    2.0
    """

    name = "proximal_decay"
    scale_aware = True
    fusable = True
    must_follow = (ScaleByLearningRate,)

    def __init__(self, weight_decay=hp("weight_decay"), lr=hp("lr"), enabled=True):
        self.weight_decay = weight_decay
        self.lr = lr
        self.enabled = enabled

    def validate(self, group):
        non_negative(self.weight_decay, group, "weight_decay")
        non_negative(self.lr, group, "lr")
        boolean(self.enabled, group, "enabled")

    def scalars(self, group, step):
        shrink = float(resolve(self.lr, group)) * float(resolve(self.weight_decay, group))
        return {"divisor": 1.0 + shrink, "decay": -shrink / (1.0 + shrink)}

    def update(self, updates, state, params, ctx):
        if ctx.value(self.enabled):
            # p + x  ->  (p + x) / (1 + s)  =  p + x / (1 + s) - s / (1 + s) p
            s = ctx.scalars(self)
            ctx.divide(s["divisor"])
            ctx.add_decay(s["decay"])
        return updates


proximal_decay = ProximalDecay
