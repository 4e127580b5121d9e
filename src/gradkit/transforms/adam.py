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

from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, boolean, positive

__all__ = ["scale_by_adam", "ScaleByAdam", "bias_corrections"]


def bias_corrections(beta: float, steps: list[int]) -> list[float]:
    return [1.0 - beta**s for s in steps]


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
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        torch._foreach_lerp_(exp_avg, updates, 1.0 - b1)
        torch._foreach_mul_(exp_avg_sq, b2)
        torch._foreach_addcmul_(exp_avg_sq, updates, updates, 1.0 - b2)
        second = exp_avg_sq
        if ctx.value(self.amsgrad):
            torch._foreach_maximum_(state["max_exp_avg_sq"], exp_avg_sq)
            second = state["max_exp_avg_sq"]
        denom = torch._foreach_sqrt(second)
        if ctx.step is not None:
            bc1 = 1.0 - b1**ctx.step
            torch._foreach_div_(denom, math.sqrt(1.0 - b2**ctx.step))
        else:  # tensors that have taken different numbers of steps
            bc1 = bias_corrections(b1, ctx.steps)
            torch._foreach_div_(denom, [math.sqrt(c) for c in bias_corrections(b2, ctx.steps)])
        torch._foreach_add_(denom, eps)
        out = ctx.quotient(exp_avg, denom)
        ctx.divide(bc1)
        return out


scale_by_adam = ScaleByAdam
