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
``addcdiv``.
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import check_hyper
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, boolean, positive

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
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        torch._foreach_lerp_(exp_avg, updates, 1.0 - b1)
        torch._foreach_mul_(exp_avg_sq, b2)
        torch._foreach_addcmul_(exp_avg_sq, updates, updates, 1.0 - b2)

        numerator = torch._foreach_abs(exp_avg)
        torch._foreach_mul_(numerator, torch._foreach_sign(updates))
        denom = torch._foreach_sqrt(exp_avg_sq)
        if not ctx.value(self.correct_bias):
            torch._foreach_add_(denom, eps)
            return ctx.fresh(ctx.quotient(numerator, denom))
        steps = [ctx.step] * len(updates) if ctx.step is not None else ctx.steps
        bc1 = [1.0 - b1**s for s in steps]
        bc2_sqrt = [math.sqrt(1.0 - b2**s) for s in steps]
        if ctx.value(self.eps_placement) == "paper":
            torch._foreach_div_(denom, bc2_sqrt)
            torch._foreach_add_(denom, eps)
            out = ctx.quotient(numerator, denom)
            ctx.divide(bc1[0] if ctx.step is not None else bc1)
        else:
            torch._foreach_add_(denom, eps)
            out = ctx.quotient(numerator, denom)
            factors = [c2 / c1 for c1, c2 in zip(bc1, bc2_sqrt)]
            ctx.multiply(factors[0] if ctx.step is not None else factors)
        ctx.owned = True  # the numerator is a fresh tensor of ours, unlike Adam's (its state buffer)
        return out


scale_by_grams = ScaleByGrams
