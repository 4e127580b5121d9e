"""AdaMomentum: Adam whose second moment is the moving average of the squared *momentum*.

Wang, Kang, Qin, Wang, Xu, Zhang & Fu, "Rethinking Adam: A Twofold Exponential Moving Average
Approach", arXiv:2106.11514 (2021). No official code is published with the paper; this follows its
Algorithm 1:

    m_t = b1 m_{t-1} + (1 - b1) g_t
    v_t = b2 v_{t-1} + (1 - b2) m_t^2 + eps          (eps inside the average, as in AdaBelief)
    u_t = (m_t / (1 - b1^t)) / sqrt(v_t / (1 - b2^t))

The update is left pending as ``m_t / (sqrt(v_t) / sqrt(1 - b2^t))`` times ``1 / (1 - b1^t)`` (one
``addcdiv`` at apply time). ``amsgrad=True`` uses the running maximum of ``v_t`` (the AMSGrad variant
the paper's convergence analysis mentions; off by default).
"""
from __future__ import annotations

import math

import torch

from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, boolean, positive

__all__ = ["scale_by_adamomentum", "ScaleByAdaMomentum"]


@register_transform(
    "scale_by_adamomentum",
    summary="Adam with the second moment taken of the momentum instead of the gradient (AdaMomentum)",
    reference="Wang et al., Rethinking Adam: A Twofold Exponential Moving Average Approach, arXiv:2106.11514",
)
class ScaleByAdaMomentum(GradientTransform):
    name = "adamomentum"
    state_kinds = {"exp_avg": "moment", "exp_avg_sq": "moment", "max_exp_avg_sq": "moment"}

    def __init__(self, betas=(0.9, 0.999), eps=1e-8, amsgrad=False):
        self.betas = betas
        self.eps = eps
        self.amsgrad = amsgrad

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        positive(self.eps, group, "eps")
        boolean(self.amsgrad, group, "amsgrad")

    def init(self, params, ctx):
        state = {
            "exp_avg": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
            "exp_avg_sq": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
        }
        if ctx.value(self.amsgrad):
            state["max_exp_avg_sq"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        return state

    def update(self, updates, state, params, ctx):
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        eps = float(ctx.value(self.eps))
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        torch._foreach_lerp_(exp_avg, updates, 1.0 - b1)
        torch._foreach_mul_(exp_avg_sq, b2)
        torch._foreach_addcmul_(exp_avg_sq, exp_avg, exp_avg, 1.0 - b2)
        torch._foreach_add_(exp_avg_sq, eps)
        second = exp_avg_sq
        if ctx.value(self.amsgrad):
            torch._foreach_maximum_(state["max_exp_avg_sq"], exp_avg_sq)
            second = state["max_exp_avg_sq"]
        denom = torch._foreach_sqrt(second)
        if ctx.step is not None:
            bc1 = 1.0 - b1**ctx.step
            torch._foreach_div_(denom, math.sqrt(1.0 - b2**ctx.step))
        else:
            bc1 = [1.0 - b1**s for s in ctx.steps]
            torch._foreach_div_(denom, [math.sqrt(1.0 - b2**s) for s in ctx.steps])
        out = ctx.quotient(exp_avg, denom)
        ctx.divide(bc1)
        return out


scale_by_adamomentum = ScaleByAdaMomentum
