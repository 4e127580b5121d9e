"""The gradient divided by the root of its bias-corrected running mean square (RMSprop with Adam's
second moment, no momentum): the base direction of Schedule-Free AdamW.

    v_t = b2 v_{t-1} + (1 - b2) g_t^2;     u_t = g_t / (sqrt(v_t / (1 - b2^t)) + eps)

``beta2`` may be a pair (Adam-style ``betas``), of which the second entry is used, so that a recipe can
pass the group's ``betas``. This is the order of operations of ``schedulefree.AdamWScheduleFree``.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import check_hyper, resolve
from gradkit.core.state import SECOND_MOMENT
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import positive

__all__ = ["scale_by_rms", "ScaleByRMS", "second_entry"]


def second_entry(value):
    """``value[1]`` for a pair, ``value`` for a number."""
    return value[1] if isinstance(value, (tuple, list)) else value


def _beta(value, group, name, pick):
    def ok(x):
        x = pick(x)
        return isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= float(x) < 1

    return float(pick(check_hyper(value, group, name, ok, "in [0, 1) (or a pair whose entry used is)")))


@register_transform("scale_by_rms", summary="divide by the root of the bias-corrected mean square (no momentum)")
class ScaleByRMS(GradientTransform):
    """Divides by the root of the bias-corrected EMA of ``g^2`` (args ``beta2`` (or a pair), ``eps``).

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> t = gradkit.chain(gradkit.scale_by_rms(), gradkit.scale_by_learning_rate())
    >>> opt = gradkit.Optimizer([w], t, {"lr": 0.1})
    >>> for _ in range(2):
    ...     w.grad = torch.tensor([0.5, -0.5]); opt.step()
    >>> w.detach()
    tensor([ 0.8000, -1.8000])
    """

    name = "rms"
    state_kinds = {"exp_avg_sq": SECOND_MOMENT}

    def __init__(self, beta2=0.999, eps=1e-8):
        self.beta2 = beta2
        self.eps = eps

    def validate(self, group):
        _beta(self.beta2, group, "betas", second_entry)
        positive(self.eps, group, "eps")

    def init(self, params, ctx):
        return {"exp_avg_sq": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}

    def scalars(self, group, step):
        b2 = _beta(self.beta2, group, "betas", second_entry)
        return {"b2": b2, "one_minus_b2": 1.0 - b2, "bias_correction2": 1.0 - b2**step,
                "eps": float(resolve(self.eps, group))}

    def update(self, updates, state, params, ctx):
        s = ctx.scalars(self)
        v = state["exp_avg_sq"]
        ctx.ops.mul_(v, s["b2"])
        torch._foreach_addcmul_(v, updates, updates, s["one_minus_b2"])
        denom = ctx.ops.div(v, s["bias_correction2"])
        torch._foreach_sqrt_(denom)
        ctx.ops.add_(denom, s["eps"])
        return ctx.fresh(torch._foreach_div(updates, denom))


scale_by_rms = ScaleByRMS
