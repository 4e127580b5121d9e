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
from gradkit.core.state import FIRST_MOMENT, SECOND_MOMENT
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms.adam import adam_moments, moment_scalars
from gradkit.transforms._blocked import blocked_quotient, pick
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
    """Grams: Adam's update magnitude with the current gradient's sign.

    Args:
        betas: ``(b1, b2)`` in [0, 1).
        eps: added to the root of the second moment (> 0).
        correct_bias: apply both bias corrections (the official code allows dropping them).
        eps_placement: ``"official"`` (eps on the raw root) or ``"paper"`` (Adam's placement).

    ``u_t = sign(g_t) |m_t| / (sqrt(v_t) + eps) * sqrt(1 - b2^t) / (1 - b1^t)`` (official). Reference: Cao, Li &
    Song, arXiv:2412.17107; https://github.com/Gunale0926/Grams.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_grams(), gradkit.scale_by_learning_rate()),
    ...                         {"lr": 0.1})
    >>> w.grad = torch.tensor([2.0, -2.0]); opt.step(); w.detach()
    tensor([0.9000, 1.1000])
    """

    name = "grams"
    fusable = True
    state_kinds = {"exp_avg": FIRST_MOMENT, "exp_avg_sq": SECOND_MOMENT}

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

    def scalars(self, group, step):
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

    def update(self, updates, state, params, ctx):
        s, ops = ctx.scalars(self), ctx.ops

        def terms(owners, exp_avg, exp_avg_sq, grads, out=None):
            adam_moments(ops, grads, exp_avg, exp_avg_sq, {k: pick(s[k], owners) for k in ("one_minus_b1", "b2", "one_minus_b2")})
            numerator = ops.abs(exp_avg)
            ops.mul_(numerator, ops.sign(grads))
            denom = ops.sqrt(exp_avg_sq)
            ops.div_(denom, pick(s["bias_correction2_sqrt"], owners))
            ops.add_(denom, pick(s["eps"], owners))
            return numerator, denom

        out = blocked_quotient(ctx, terms, state["exp_avg"], state["exp_avg_sq"], updates, owned=True)
        ctx.multiply(s["step_size"])
        return out


scale_by_grams = ScaleByGrams
