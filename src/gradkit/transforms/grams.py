"""Grams: Adam's update magnitude, the current gradient's sign.

Cao, Li & Song, "Grams: Gradient Descent with Adaptive Momentum Scaling", arXiv:2412.17107 (ICLR 2025
SCOPE workshop); official code https://github.com/Gunale0926/Grams (pip package ``grams-pytorch``).

    m_t = b1 m_{t-1} + (1 - b1) g_t          v_t = b2 v_{t-1} + (1 - b2) g_t^2
    u_t = sign(g_t) * |m_t| / (sqrt(v_t) + eps) * sqrt(1 - b2^t) / (1 - b1^t)     (official code)
    u_t = sign(g_t) * |m_hat_t| / (sqrt(v_hat_t) + eps)                           (paper, Algorithm 1)

The two differ only in where ``eps`` sits relative to the bias correction: the official code adds it
to the uncorrected ``sqrt(v_t)`` (the BERT/Hugging Face AdamW form) and is the default here;
``eps_placement="paper"`` gives the paper's Adam form (also what pytorch_optimizer.Grams computes).
``correct_bias=False`` drops both bias corrections, as the official code allows. A zero gradient
coordinate gives a zero update (sign(0) = 0), as in both.

The result is left pending as ``numerator / denominator`` so the optimizer applies it with one
``addcdiv``; on CPU the step runs block by block in cache and returns the quotient in one fresh tensor
per param (see ``gradkit.transforms._blocked``).
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import check_hyper, resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms.adam import fused_adam_moments, moment_scalars
from gradkit.transforms._blocked import blocked_quotient, pick
from gradkit.transforms._checks import betas as check_betas, boolean, positive
from gradkit.transforms._stepwise import per_step

__all__ = ["scale_by_grams", "ScaleByGrams", "EPS_PLACEMENTS"]

EPS_PLACEMENTS = ("official", "paper")


@register_transform(
    "scale_by_grams",
    summary="Adam's update magnitude with the sign of the current gradient (Grams)",
    reference="Cao, Li & Song, Grams: Gradient Descent with Adaptive Momentum Scaling, arXiv:2412.17107; "
              "https://github.com/Gunale0926/Grams",
)
class ScaleByGrams(GradientTransform):
    name = "grams"
    state_kinds = {"exp_avg": "moment", "exp_avg_sq": "moment"}

    def __init__(self, betas=(0.9, 0.999), eps=1e-6, correct_bias=True, eps_placement="official"):
        self.betas = betas
        self.eps = eps
        self.correct_bias = correct_bias
        self.eps_placement = eps_placement

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        positive(self.eps, group, "eps")
        boolean(self.correct_bias, group, "correct_bias")
        check_hyper(self.eps_placement, group, "eps_placement", lambda x: x in EPS_PLACEMENTS,
                    f"one of {EPS_PLACEMENTS}")

    def init(self, params, ctx):
        return {
            "exp_avg": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
            "exp_avg_sq": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
        }

    def update(self, updates, state, params, ctx):
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        eps = float(ctx.value(self.eps))
        correct_bias = ctx.value(self.correct_bias)
        paper = correct_bias and ctx.value(self.eps_placement) == "paper"
        bc2_sqrt = per_step(ctx, lambda t: math.sqrt(1.0 - b2**t)) if paper else 1.0

        def terms(owners, exp_avg, exp_avg_sq, grads):
            torch._foreach_lerp_(exp_avg, grads, 1.0 - b1)
            torch._foreach_mul_(exp_avg_sq, b2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1.0 - b2)
            numerator = torch._foreach_abs(exp_avg)
            torch._foreach_mul_(numerator, torch._foreach_sign(grads))
            denom = torch._foreach_sqrt(exp_avg_sq)
            if paper:
                torch._foreach_div_(denom, pick(bc2_sqrt, owners))
            torch._foreach_add_(denom, eps)
            return numerator, denom

        out = blocked_quotient(ctx, terms, state["exp_avg"], state["exp_avg_sq"], updates)
        ctx.owned = True  # the numerator is a fresh tensor of ours, unlike Adam's (its state buffer)
        if not correct_bias:
            return out
        if paper:
            ctx.divide(per_step(ctx, lambda t: 1.0 - b1**t))
        else:
            ctx.multiply(per_step(ctx, lambda t: math.sqrt(1.0 - b2**t) / (1.0 - b1**t)))
        return out

    def fused_scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        # both eps placements and correct_bias=False as one formula: sqrt(v) / bc2_sqrt + eps, times step_size
        bc2_sqrt, step_size = 1.0, 1.0
        if resolve(self.correct_bias, group):
            if resolve(self.eps_placement, group) == "paper":
                bc2_sqrt, step_size = math.sqrt(1.0 - b2**step), 1.0 / (1.0 - b1**step)
            else:
                step_size = math.sqrt(1.0 - b2**step) / (1.0 - b1**step)
        return {**moment_scalars(b1, b2), "eps": float(resolve(self.eps, group)),
                "bias_correction2_sqrt": bc2_sqrt, "step_size": step_size}

    def fused_tensor(self, update, state, param, scalars, group):
        m, v = state["exp_avg"], state["exp_avg_sq"]
        fused_adam_moments(update, m, v, scalars)
        denom = v.sqrt() / scalars["bias_correction2_sqrt"] + scalars["eps"]
        return m.abs() * update.sign() / denom * scalars["step_size"]


scale_by_grams = ScaleByGrams
