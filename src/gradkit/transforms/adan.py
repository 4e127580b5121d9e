"""Adan's three moments: gradient, gradient difference and the squared Nesterov-corrected gradient.

Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
Models", IEEE TPAMI 2024, arXiv:2208.06677; official code https://github.com/sail-sg/Adan. In the
official code's convention (betas weight the old value; the paper writes 1 - beta)::

    d_t = g_t - g_{t-1}                    (d_1 = 0: the previous gradient starts as g_1)
    m_t = b1 m_{t-1} + (1 - b1) g_t
    v_t = b2 v_{t-1} + (1 - b2) d_t
    n_t = b3 n_{t-1} + (1 - b3) (g_t + b2 d_t)^2
    u_t = (m_t / (1 - b1^t) + b2 v_t / (1 - b2^t)) / (sqrt(n_t / (1 - b3^t)) + eps)

The bias corrections are the official code's; the paper's Algorithm 1 has none. State: three
moments and the previous gradient (stored negated, as the official code does), four tensors per
parameter. A step count of 1 (first step, or after ``Adan.restart()``) resets the previous gradient.
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, non_negative
from gradkit.transforms._stepwise import per_step

__all__ = ["scale_by_adan", "ScaleByAdan"]


@register_transform(
    "scale_by_adan",
    summary="Adan: moments of the gradient, its difference and the squared Nesterov-corrected gradient",
    reference="Xie, Zhou, Li, Lin & Yan, Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep Models, "
              "IEEE TPAMI 2024, arXiv:2208.06677; https://github.com/sail-sg/Adan",
)
class ScaleByAdan(GradientTransform):
    name = "adan"
    state_kinds = {"exp_avg": "moment", "exp_avg_diff": "moment", "exp_avg_sq": "moment", "neg_prev_grad": "gradient"}

    def __init__(self, betas=(0.98, 0.92, 0.99), eps=1e-8):
        self.betas = betas
        self.eps = eps

    def validate(self, group):
        check_betas(self.betas, group, "betas", count=3)
        non_negative(self.eps, group, "eps")

    def init(self, params, ctx):
        keys = ("exp_avg", "exp_avg_diff", "exp_avg_sq", "neg_prev_grad")
        return {k: [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params] for k in keys}

    def update(self, updates, state, params, ctx):
        b1, b2, b3 = (float(b) for b in ctx.value(self.betas))
        eps = float(ctx.value(self.eps))
        m, v, n, diff = state["exp_avg"], state["exp_avg_diff"], state["exp_avg_sq"], state["neg_prev_grad"]
        first = [i for i, s in enumerate(ctx.steps) if s == 1]
        if first:  # no previous gradient: start it at g_1 so that d_1 = 0
            reset = [diff[i] for i in first]
            torch._foreach_copy_(reset, [updates[i] for i in first])
            torch._foreach_neg_(reset)
        torch._foreach_add_(diff, updates)  # d_t = g_t - g_{t-1}
        torch._foreach_lerp_(m, updates, 1.0 - b1)
        torch._foreach_lerp_(v, diff, 1.0 - b2)
        torch._foreach_mul_(diff, b2)
        torch._foreach_add_(diff, updates)  # g_t + b2 d_t
        torch._foreach_mul_(n, b3)
        torch._foreach_addcmul_(n, diff, diff, 1.0 - b3)
        torch._foreach_copy_(diff, updates)
        torch._foreach_neg_(diff)  # keep -g_t for the next difference

        # sqrt(n / bc3) + eps = (sqrt(n) + eps sqrt(bc3)) / sqrt(bc3): the sqrt(bc3) joins the scalar
        root_bc3 = per_step(ctx, lambda t: math.sqrt(1.0 - b3**t))
        denom = torch._foreach_sqrt(n)
        torch._foreach_add_(denom, eps * root_bc3 if isinstance(root_bc3, float) else [eps * r for r in root_bc3])
        # m / bc1 + b2 v / bc2 = (m + v * b2 bc1 / bc2) / bc1, folded into one numerator
        ratio = per_step(ctx, lambda t: b2 * (1.0 - b1**t) / (1.0 - b2**t))
        if isinstance(ratio, float):
            numerator = torch._foreach_add(m, v, alpha=ratio)
        else:
            numerator = torch._foreach_add(m, torch._foreach_mul(v, ratio))
        out = ctx.quotient(numerator, denom)
        ctx.divide(per_step(ctx, lambda t: (1.0 - b1**t) / math.sqrt(1.0 - b3**t)))
        return out

    def fused_scalars(self, group, step):
        b1, b2, b3 = (float(b) for b in resolve(self.betas, group))
        root_bc3 = math.sqrt(1.0 - b3**step)
        return {"one_minus_b1": 1.0 - b1, "b2": b2, "one_minus_b2": 1.0 - b2, "b3": b3, "one_minus_b3": 1.0 - b3,
                "keep_prev": 0.0 if step == 1 else 1.0,  # d_1 = 0
                "eps_root_bc3": float(resolve(self.eps, group)) * root_bc3,
                "diff_ratio": b2 * (1.0 - b1**step) / (1.0 - b2**step),
                "divisor": (1.0 - b1**step) / root_bc3}

    def fused_tensor(self, update, state, param, scalars, group):
        m, v, n, neg_prev = state["exp_avg"], state["exp_avg_diff"], state["exp_avg_sq"], state["neg_prev_grad"]
        diff = (update + neg_prev) * scalars["keep_prev"]
        m.lerp_(update, scalars["one_minus_b1"])
        v.lerp_(diff, scalars["one_minus_b2"])
        corrected = diff * scalars["b2"] + update
        n.copy_(n * scalars["b3"] + corrected * corrected * scalars["one_minus_b3"])
        neg_prev.copy_(-update)
        return (m + v * scalars["diff_ratio"]) / (n.sqrt() + scalars["eps_root_bc3"]) / scalars["divisor"]


scale_by_adan = ScaleByAdan
