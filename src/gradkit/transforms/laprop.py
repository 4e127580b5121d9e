"""LaProp: momentum of the RMS-normalised gradient (the momentum and adaptivity of Adam decoupled).

Ziyin, Wang & Ueda, "LaProp: Separating Momentum and Adaptivity in Adam", arXiv:2002.04839; official code
https://github.com/Z-T-WANG/LaProp-Optimizer.

    v_t = b2 v_{t-1} + (1 - b2) g_t^2
    m_t = b1 m_{t-1} + (1 - b1) g_t / (sqrt(v_t / (1 - b2^t)) + eps)
    u_t = m_t / (1 - b1^t)

Adam divides the momentum by the root; LaProp takes the momentum of the divided gradient, so the
step stays bounded for any (b1, b2). Deviation from the official code: there the learning rate is
inside the momentum (``m += (1 - b1) lr g / ...``, bias-corrected by the lr-weighted sum), so a
scheduled lr changes only new contributions; here the lr multiplies the whole update (as in the
paper's Algorithm 1 and in pytorch-optimizer). For a constant lr the two are the same. The official
``centered`` and ``amsgrad`` options are not provided.
"""
from __future__ import annotations


import torch

from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, positive
from gradkit.transforms._stepwise import per_step

__all__ = ["scale_by_laprop", "ScaleByLaProp"]


@register_transform(
    "scale_by_laprop",
    summary="LaProp: bias-corrected momentum of the gradient divided by its running RMS",
    reference="Ziyin, Wang & Ueda, LaProp: Separating Momentum and Adaptivity in Adam, arXiv:2002.04839; "
              "https://github.com/Z-T-WANG/LaProp-Optimizer",
)
class ScaleByLaProp(GradientTransform):
    name = "laprop"
    state_kinds = {"exp_avg": "moment", "exp_avg_sq": "moment"}

    def __init__(self, betas=(0.9, 0.999), eps=1e-15):
        self.betas = betas
        self.eps = eps

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        positive(self.eps, group, "eps")

    def init(self, params, ctx):
        return {"exp_avg": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
                "exp_avg_sq": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}

    def update(self, updates, state, params, ctx):
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        eps = float(ctx.value(self.eps))
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        torch._foreach_mul_(exp_avg_sq, b2)
        torch._foreach_addcmul_(exp_avg_sq, updates, updates, 1.0 - b2)
        denom = torch._foreach_div(exp_avg_sq, per_step(ctx, lambda t: 1.0 - b2**t))
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, eps)
        torch._foreach_mul_(exp_avg, b1)
        torch._foreach_addcdiv_(exp_avg, updates, denom, 1.0 - b1)
        ctx.divide(per_step(ctx, lambda t: 1.0 - b1**t))
        return exp_avg


scale_by_laprop = ScaleByLaProp

