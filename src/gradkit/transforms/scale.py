"""Scalar scalings: folded into the pending scale, so they cost no pass over memory."""
from __future__ import annotations

from gradkit.core.hyper import hp, resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean, non_negative

__all__ = ["scale", "scale_by_learning_rate", "flip_sign", "Scale", "ScaleByLearningRate", "FlipSign"]


@register_transform("scale", summary="multiply updates by a constant")
class Scale(GradientTransform):
    """Multiply the update by a constant ``factor`` (folded into the pending scale: no pass over memory).

    ``u <- factor * u``. Reference: optax.scale.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale(-0.5)))
    >>> w.grad = torch.tensor([2.0]); opt.step(); w.item()
    0.0
    """

    name = "scale"
    scale_aware = True
    fusable = True

    def __init__(self, factor: float):
        if not isinstance(factor, (int, float)) or isinstance(factor, bool):
            raise ValueError(f"factor must be a number, got {factor!r}")
        self.factor = float(factor)

    def scalars(self, group, step):
        return {"factor": self.factor}

    def update(self, updates, state, params, ctx):
        ctx.multiply(ctx.scalars(self)["factor"])
        return updates


@register_transform("scale_by_learning_rate", summary="multiply updates by -lr, reading the group's current lr (LR schedulers work)")
class ScaleByLearningRate(GradientTransform):
    """Multiply the update by ``-lr`` (``lr`` without ``flip_sign``), read from the group at every step.

    Args:
        lr: the learning rate, usually ``hp("lr")`` so that schedulers and param groups set it.
        flip_sign: negate (descent); the optimizer *adds* the chain's output to the params.

    ``u <- -lr * u``. Reference: optax.scale_by_learning_rate.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_learning_rate()), {"lr": 0.25})
    >>> w.grad = torch.tensor([2.0]); opt.step(); w.item()
    0.5
    """

    name = "lr"
    scale_aware = True
    fusable = True
    applies_lr = True

    def __init__(self, lr=hp("lr"), flip_sign: bool = True):
        self.lr = lr
        self.flip_sign = flip_sign

    def validate(self, group):
        non_negative(self.lr, group, "lr")

    def scalars(self, group, step):
        lr = float(resolve(self.lr, group))
        return {"factor": -lr if self.flip_sign else lr}

    def update(self, updates, state, params, ctx):
        ctx.multiply(ctx.scalars(self)["factor"])
        return updates


@register_transform("flip_sign", summary="negate updates when a flag is set (maximize instead of minimize)")
class FlipSign(GradientTransform):
    """Negate the update when the group flag ``when`` (default ``maximize``) is set.

    ``u <- -u`` if ``when``. Reference: torch.optim's ``maximize``.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.flip_sign(), gradkit.scale_by_learning_rate()),
    ...                         {"lr": 0.5, "maximize": True})
    >>> w.grad = torch.tensor([2.0]); opt.step(); w.item()
    2.0
    """

    name = "flip_sign"
    scale_aware = True
    fusable = True

    def __init__(self, when=hp("maximize")):
        self.when = when

    def validate(self, group):
        boolean(self.when, group, "maximize")

    def update(self, updates, state, params, ctx):
        if ctx.value(self.when):
            ctx.multiply(-1.0)
        return updates


scale = Scale
scale_by_learning_rate = ScaleByLearningRate
flip_sign = FlipSign
