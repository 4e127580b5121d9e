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

__all__ = ["decoupled_decay", "DecoupledDecay"]


@register_transform(
    "decoupled_decay",
    summary="params *= 1 - lr * wd (or 1 - wd when fixed); goes after scale_by_learning_rate",
    reference="Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019; fixed form: Zhuang et al., "
              "AdaBelief, NeurIPS 2020",
)
class DecoupledDecay(GradientTransform):
    name = "decoupled_decay"
    scale_aware = True

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

    def update(self, updates, state, params, ctx):
        if not ctx.value(self.enabled):
            return updates
        weight_decay = float(ctx.value(self.weight_decay))
        factor = weight_decay if ctx.value(self.fixed) else float(ctx.value(self.lr)) * weight_decay
        if factor != 0.0:
            ctx.add_decay(-factor)
        return updates

    def fused_scalars(self, group, step):
        weight_decay = float(resolve(self.weight_decay, group))
        return {"factor": weight_decay if resolve(self.fixed, group) else float(resolve(self.lr, group)) * weight_decay}

    def fused_affine(self, scale, decay, scalars, group):
        return (scale, decay - scalars["factor"]) if resolve(self.enabled, group) else (scale, decay)


decoupled_decay = DecoupledDecay
