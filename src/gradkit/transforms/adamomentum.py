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

import torch

from gradkit.registry import register_transform
from gradkit.transforms.adam import ScaleByAdam

__all__ = ["scale_by_adamomentum", "ScaleByAdaMomentum"]


@register_transform(
    "scale_by_adamomentum",
    summary="Adam with the second moment taken of the momentum instead of the gradient (AdaMomentum)",
    reference="Wang et al., Rethinking Adam: A Twofold Exponential Moving Average Approach, arXiv:2106.11514",
)
class ScaleByAdaMomentum(ScaleByAdam):
    """Same arguments, state and validation as :class:`ScaleByAdam`; only the second moment differs."""

    name = "adamomentum"

    def update(self, updates, state, params, ctx):
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        eps = float(ctx.value(self.eps))
        second = self.update_moments(updates, state, b1, b2, eps, ctx)
        return self.bias_corrected_quotient(state["exp_avg"], second, b1, b2, 0.0, ctx)  # eps is inside v

    def update_moments(self, updates, state, b1, b2, eps, ctx):
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        torch._foreach_lerp_(exp_avg, updates, 1.0 - b1)
        torch._foreach_mul_(exp_avg_sq, b2)
        torch._foreach_addcmul_(exp_avg_sq, exp_avg, exp_avg, 1.0 - b2)
        torch._foreach_add_(exp_avg_sq, eps)
        return self.maybe_amsgrad(exp_avg_sq, state, ctx)

    def fused_tensor(self, update, state, param, scalars, group):
        second = self.fused_moments(update, state, scalars, group)
        return state["exp_avg"] / (second.sqrt() / scalars["bias_correction2_sqrt"]) / scalars["bias_correction1"]

    def fused_moments(self, update, state, scalars, group):
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(update, scalars["one_minus_b1"])
        exp_avg_sq.copy_(exp_avg_sq * scalars["b2"] + scalars["one_minus_b2"] * exp_avg * exp_avg + scalars["eps"])
        return self.fused_maybe_amsgrad(exp_avg_sq, state, group)


scale_by_adamomentum = ScaleByAdaMomentum
