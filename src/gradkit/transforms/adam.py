"""Adam's moment estimates, bias-corrected, with torch.optim.Adam's eps placement.

Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015 (arXiv:1412.6980);
AMSGrad: Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.

    m_t = b1 m_{t-1} + (1 - b1) g_t          v_t = b2 v_{t-1} + (1 - b2) g_t^2
    u_t = (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps)        (v_t -> max_{s<=t} v_s with amsgrad)

The update is left pending as ``m_t / (sqrt(v_t) / sqrt(1 - b2^t) + eps)`` times ``1 / (1 - b1^t)``;
when nothing after it reads the values, the optimizer applies it with one ``addcdiv`` exactly as
torch.optim's multi-tensor Adam does, so the numbers are the same.
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, boolean, positive
from gradkit.transforms._stepwise import per_step

__all__ = ["scale_by_adam", "ScaleByAdam"]


def moment_scalars(b1: float, b2: float) -> dict[str, float]:
    """The scalars of :func:`fused_adam_moments`; ``1 - b`` is taken in double, as the unfused ops get it
    (``1 - float32(0.999)`` is off by 3e-5 relative)."""
    return {"one_minus_b1": 1.0 - b1, "b2": b2, "one_minus_b2": 1.0 - b2}


def fused_adam_moments(update, exp_avg, exp_avg_sq, scalars) -> None:
    """Adam's moment updates of one tensor, in place, for the fused forms of the Adam family."""
    exp_avg.lerp_(update, scalars["one_minus_b1"])
    exp_avg_sq.copy_(exp_avg_sq * scalars["b2"] + update * update * scalars["one_minus_b2"])


@register_transform(
    "scale_by_adam",
    summary="Adam's bias-corrected first/second moments (optionally AMSGrad)",
    reference="Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015, arXiv:1412.6980",
)
class ScaleByAdam(GradientTransform):
    name = "adam"
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
        second = self.update_moments(updates, state, b1, b2, eps, ctx)
        return self.bias_corrected_quotient(state["exp_avg"], second, b1, b2, eps, ctx)

    def update_moments(self, updates, state, b1, b2, eps, ctx):
        """Update the moments in place; return the second-moment tensors the denominator uses."""
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        torch._foreach_lerp_(exp_avg, updates, 1.0 - b1)
        torch._foreach_mul_(exp_avg_sq, b2)
        torch._foreach_addcmul_(exp_avg_sq, updates, updates, 1.0 - b2)
        return self.maybe_amsgrad(exp_avg_sq, state, ctx)

    def maybe_amsgrad(self, exp_avg_sq, state, ctx):
        if not ctx.value(self.amsgrad):
            return exp_avg_sq
        torch._foreach_maximum_(state["max_exp_avg_sq"], exp_avg_sq)
        return state["max_exp_avg_sq"]

    @staticmethod
    def bias_corrected_quotient(numerator, second, b1, b2, eps, ctx):
        """Leave ``(numerator / (1 - b1^t)) / (sqrt(second / (1 - b2^t)) + eps)`` pending (eps may be 0)."""
        denom = torch._foreach_sqrt(second)
        torch._foreach_div_(denom, per_step(ctx, lambda t: math.sqrt(1.0 - b2**t)))
        if eps:
            torch._foreach_add_(denom, eps)
        out = ctx.quotient(numerator, denom)
        ctx.divide(per_step(ctx, lambda t: 1.0 - b1**t))
        return out

    def fused_scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        return {**moment_scalars(b1, b2), "eps": float(resolve(self.eps, group)),
                "bias_correction1": 1.0 - b1**step, "bias_correction2_sqrt": math.sqrt(1.0 - b2**step)}

    def fused_tensor(self, update, state, param, scalars, group):
        second = self.fused_moments(update, state, scalars, group)
        return self.fused_quotient(state["exp_avg"], second, scalars)

    @staticmethod
    def fused_quotient(numerator, second, scalars):
        """The fused form of :meth:`bias_corrected_quotient` (returns the update)."""
        denom = second.sqrt() / scalars["bias_correction2_sqrt"] + scalars["eps"]
        return numerator / denom / scalars["bias_correction1"]

    def fused_moments(self, update, state, scalars, group):
        """The fused form of :meth:`update_moments`."""
        fused_adam_moments(update, state["exp_avg"], state["exp_avg_sq"], scalars)
        return self.fused_maybe_amsgrad(state["exp_avg_sq"], state, group)

    def fused_maybe_amsgrad(self, exp_avg_sq, state, group):
        """The fused form of :meth:`maybe_amsgrad`."""
        if not resolve(self.amsgrad, group):
            return exp_avg_sq
        torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
        return state["max_exp_avg_sq"]


scale_by_adam = ScaleByAdam
