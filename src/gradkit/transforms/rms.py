"""The gradient divided by the root of its bias-corrected running mean square (RMSprop with Adam's
second moment, no momentum): the base direction of Schedule-Free AdamW.

    v_t = b2 v_{t-1} + (1 - b2) g_t^2;     u_t = g_t / (sqrt(v_t / (1 - b2^t)) + eps)

``beta2`` may be a pair (Adam-style ``betas``), of which the second entry is used, so that a recipe can
pass the group's ``betas``. This is the order of operations of ``schedulefree.AdamWScheduleFree``.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import check_hyper
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import positive
from gradkit.transforms._stepwise import per_step

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
    name = "rms"
    state_kinds = {"exp_avg_sq": "moment"}

    def __init__(self, beta2=0.999, eps=1e-8):
        self.beta2 = beta2
        self.eps = eps

    def validate(self, group):
        _beta(self.beta2, group, "betas", second_entry)
        positive(self.eps, group, "eps")

    def init(self, params, ctx):
        return {"exp_avg_sq": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}

    def update(self, updates, state, params, ctx):
        b2 = _beta(self.beta2, ctx.group, "betas", second_entry)
        v = state["exp_avg_sq"]
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, updates, updates, 1.0 - b2)
        denom = torch._foreach_div(v, per_step(ctx, lambda t: 1.0 - b2**t))
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, float(ctx.value(self.eps)))
        return ctx.fresh(torch._foreach_div(updates, denom))


scale_by_rms = ScaleByRMS
