"""Decoupled weight decay placed after the learning-rate scale, optionally independent of the lr.

Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, arXiv:1711.05101. The
``fixed`` form ``p <- (1 - wd) p`` (no lr factor) is AdaBelief's ``fixed_decay`` (Zhuang et al.,
NeurIPS 2020, https://github.com/juntang-zhuang/Adabelief-Optimizer)::

    p <- p * (1 - lr * wd)      (fixed=False, the same as add_decayed_weights before the lr scale)
    p <- p * (1 - wd)           (fixed=True)

It must come after ``scale_by_learning_rate`` in the chain: it adds ``-factor * params`` to the final
(already lr-scaled, negated) update, so it costs nothing but the ``params *= 1 - factor`` pass.
"""
from __future__ import annotations

from gradkit.core.hyper import hp, resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean, non_negative
from gradkit.transforms.scale import ScaleByLearningRate

__all__ = ["decoupled_decay", "DecoupledDecay"]


@register_transform(
    "decoupled_decay",
    summary="params *= 1 - lr * wd (or 1 - wd when fixed); goes after scale_by_learning_rate",
    reference="Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019; fixed form: Zhuang et al., "
              "AdaBelief, NeurIPS 2020",
)
class DecoupledDecay(GradientTransform):
    """Decoupled weight decay after the learning-rate scale, optionally independent of the lr.

    Args:
        weight_decay: the coefficient (>= 0).
        lr: the learning rate it is multiplied by (unless ``fixed``).
        fixed: ``p <- (1 - wd) p`` (AdaBelief's ``fixed_decay``) instead of ``p <- (1 - lr wd) p``.
        enabled: group flag (AdaBelief's ``weight_decouple``).

    Must come after ``scale_by_learning_rate`` (checked when the chain is built). References: Loshchilov &
    Hutter, ICLR 2019, arXiv:1711.05101; Zhuang et al., AdaBelief, NeurIPS 2020.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([2.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_learning_rate(), gradkit.decoupled_decay(0.5)),
    ...                         {"lr": 0.1})
    >>> w.grad = torch.tensor([0.0]); opt.step(); round(w.item(), 4)
    1.9
    """

    name = "decoupled_decay"
    scale_aware = True
    fusable = True
    must_follow = (ScaleByLearningRate,)

    def __init__(self, weight_decay=hp("weight_decay"), lr=hp("lr"), fixed=False, enabled=True):
        self.weight_decay = weight_decay
        self.lr = lr
        self.fixed = fixed
        self.enabled = enabled

    def validate(self, group):
        non_negative(self.weight_decay, group, "weight_decay")
        non_negative(self.lr, group, "lr")
        boolean(self.fixed, group, "fixed_decay")
        boolean(self.enabled, group, "weight_decouple")

    def scalars(self, group, step):
        weight_decay = float(resolve(self.weight_decay, group))
        return {"factor": weight_decay if resolve(self.fixed, group) else float(resolve(self.lr, group)) * weight_decay}

    def update(self, updates, state, params, ctx):
        if ctx.value(self.enabled):
            ctx.add_decay(-ctx.scalars(self)["factor"])
        return updates


decoupled_decay = DecoupledDecay
