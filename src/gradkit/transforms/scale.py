"""Scalar scalings: folded into the pending scale, so they cost no pass over memory."""
from __future__ import annotations

from gradkit.core.hyper import hp, resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean, non_negative

__all__ = ["scale", "scale_by_learning_rate", "flip_sign", "Scale", "ScaleByLearningRate", "FlipSign"]


@register_transform("scale", summary="multiply updates by a constant")
class Scale(GradientTransform):
    name = "scale"
    scale_aware = True

    def __init__(self, factor: float):
        if not isinstance(factor, (int, float)) or isinstance(factor, bool):
            raise ValueError(f"factor must be a number, got {factor!r}")
        self.factor = float(factor)

    def update(self, updates, state, params, ctx):
        ctx.multiply(self.factor)
        return updates

    def fused_scalars(self, group, step):
        return {"factor": self.factor}

    def fused_affine(self, scale, decay, scalars, group):
        return scale * scalars["factor"], decay * scalars["factor"]


@register_transform("scale_by_learning_rate", summary="multiply updates by -lr, reading the group's current lr (LR schedulers work)")
class ScaleByLearningRate(GradientTransform):
    name = "lr"
    scale_aware = True

    def __init__(self, lr=hp("lr"), flip_sign: bool = True):
        self.lr = lr
        self.flip_sign = flip_sign

    def validate(self, group):
        non_negative(self.lr, group, "lr")

    def update(self, updates, state, params, ctx):
        lr = float(ctx.value(self.lr))
        ctx.multiply(-lr if self.flip_sign else lr)
        return updates

    def fused_scalars(self, group, step):
        lr = float(resolve(self.lr, group))
        return {"factor": -lr if self.flip_sign else lr}

    def fused_affine(self, scale, decay, scalars, group):
        return scale * scalars["factor"], decay * scalars["factor"]


@register_transform("flip_sign", summary="negate updates when a flag is set (maximize instead of minimize)")
class FlipSign(GradientTransform):
    name = "flip_sign"
    scale_aware = True

    def __init__(self, when=hp("maximize")):
        self.when = when

    def validate(self, group):
        boolean(self.when, group, "maximize")

    def update(self, updates, state, params, ctx):
        if ctx.value(self.when):
            ctx.multiply(-1.0)
        return updates

    def fused_affine(self, scale, decay, scalars, group):
        return (-scale, -decay) if resolve(self.when, group) else (scale, decay)


scale = Scale
scale_by_learning_rate = ScaleByLearningRate
flip_sign = FlipSign
