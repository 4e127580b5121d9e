"""AdaBelief's moments: the second moment tracks the belief (g - m)^2 instead of g^2.

Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris & Duncan, "AdaBelief Optimizer: Adapting
Stepsizes by the Belief in Observed Gradients", NeurIPS 2020, arXiv:2010.07468; official code
https://github.com/juntang-zhuang/Adabelief-Optimizer (package ``adabelief-pytorch``, 0.2)::

    m_t = b1 m_{t-1} + (1 - b1) g_t
    s_t = b2 s_{t-1} + (1 - b2) (g_t - m_t)^2 + eps        (eps is added to the stored state)
    s_t -> max(s_max, s_t) with amsgrad
    u_t = m_t / (1 - b1^t) / (sqrt(s_t / (1 - b2^t)) + eps)

As the official package, eps enters twice (inside ``s_t``, cumulatively, and outside the root).
With ``rectify`` (RAdam, Liu et al., ICLR 2020) the step depends on the length of the approximated
simple moving average rho_t = rho_inf - 2 t b2^t / (1 - b2^t), rho_inf = 2 / (1 - b2) - 1::

    rho_t >= 5:                u_t = r_t m_t / (1 - b1^t) / (sqrt(s_t) + eps),
                               r_t = sqrt((1 - b2^t)(rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
    else, degenerated_to_sgd:  u_t = m_t / (1 - b1^t)
    else:                      u_t = 0

Following the official code, the rectified branch divides by ``sqrt(s_t)`` even with ``amsgrad``
(the maximum is kept but used only without rectification).
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, boolean, non_negative
from gradkit.transforms._stepwise import as_list
from gradkit.transforms.adam import ScaleByAdam, moment_scalars

__all__ = ["scale_by_belief", "ScaleByBelief", "rectification"]

_ADAPTIVE, _SGD, _NONE = "adaptive", "sgd", "none"


def rectification(b2: float, step: int, degenerated_to_sgd: bool) -> tuple[str, float]:
    """RAdam's branch and factor r_t at ``step`` (the factor excludes the 1 / (1 - b1^t) correction)."""
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    b2_t = b2**step
    rho = rho_inf - 2.0 * step * b2_t / (1.0 - b2_t)
    if rho >= 5:
        return _ADAPTIVE, math.sqrt((1.0 - b2_t) * (rho - 4) / (rho_inf - 4) * (rho - 2) / rho * rho_inf / (rho_inf - 2))
    return (_SGD, 1.0) if degenerated_to_sgd else (_NONE, 0.0)


@register_transform(
    "scale_by_belief",
    summary="AdaBelief: Adam with the second moment of the gradient's deviation from its EMA (rectify, amsgrad)",
    reference="Zhuang et al., AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients, NeurIPS 2020, "
              "arXiv:2010.07468; https://github.com/juntang-zhuang/Adabelief-Optimizer",
)
class ScaleByBelief(GradientTransform):
    name = "belief"
    state_kinds = {"exp_avg": "moment", "exp_avg_var": "moment", "max_exp_avg_var": "moment"}

    def __init__(self, betas=(0.9, 0.999), eps=1e-16, amsgrad=False, rectify=True, degenerated_to_sgd=True):
        self.betas = betas
        self.eps = eps
        self.amsgrad = amsgrad
        self.rectify = rectify
        self.degenerated_to_sgd = degenerated_to_sgd

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        non_negative(self.eps, group, "eps")
        boolean(self.amsgrad, group, "amsgrad")
        boolean(self.rectify, group, "rectify")
        boolean(self.degenerated_to_sgd, group, "degenerated_to_sgd")

    def init(self, params, ctx):
        state = {
            "exp_avg": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
            "exp_avg_var": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
        }
        if ctx.value(self.amsgrad):
            state["max_exp_avg_var"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        return state

    def update(self, updates, state, params, ctx):
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        eps = float(ctx.value(self.eps))
        exp_avg, exp_avg_var = state["exp_avg"], state["exp_avg_var"]
        torch._foreach_mul_(exp_avg, b1)
        torch._foreach_add_(exp_avg, updates, alpha=1.0 - b1)
        residual = torch._foreach_sub(updates, exp_avg)
        torch._foreach_mul_(exp_avg_var, b2)
        torch._foreach_addcmul_(exp_avg_var, residual, residual, 1.0 - b2)
        del residual
        torch._foreach_add_(exp_avg_var, eps)
        second = exp_avg_var
        if ctx.value(self.amsgrad):
            torch._foreach_maximum_(state["max_exp_avg_var"], exp_avg_var)
            second = state["max_exp_avg_var"]

        n = len(updates)
        steps = [ctx.step] * n if ctx.step is not None else ctx.steps
        bc1 = [1.0 - b1**t for t in steps]
        if not ctx.value(self.rectify):
            denom = torch._foreach_sqrt(second)
            torch._foreach_div_(denom, [math.sqrt(1.0 - b2**t) for t in steps])
            torch._foreach_add_(denom, eps)
            out = ctx.quotient(exp_avg, denom)
            ctx.divide(bc1[0] if ctx.step is not None else bc1)
            return out

        degenerated = bool(ctx.value(self.degenerated_to_sgd))
        branches = [rectification(b2, t, degenerated) for t in steps]
        kinds = {kind for kind, _ in branches}
        factors = [r / c for (_, r), c in zip(branches, bc1)]
        if kinds == {_ADAPTIVE}:
            denom = torch._foreach_sqrt(exp_avg_var)
            torch._foreach_add_(denom, eps)
            out = ctx.quotient(exp_avg, denom)
            ctx.multiply(factors[0] if ctx.step is not None else factors)
            return out
        if _ADAPTIVE not in kinds:  # plain (bias-corrected) momentum steps, or none
            ctx.multiply(factors[0] if ctx.step is not None else factors)
            return list(exp_avg)
        # Tensors at different steps straddle the switch: evaluate each branch's update directly.
        adaptive = [i for i, (kind, _) in enumerate(branches) if kind == _ADAPTIVE]
        out = torch._foreach_mul(exp_avg, as_list(factors, n))
        denom = torch._foreach_sqrt([exp_avg_var[i] for i in adaptive])
        torch._foreach_add_(denom, eps)
        torch._foreach_div_([out[i] for i in adaptive], denom)
        return ctx.fresh(out)

    def fused_scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        bc1 = 1.0 - b1**step
        kind, r = rectification(b2, step, bool(resolve(self.degenerated_to_sgd, group)))
        # the rectified branch is a 0/1 weight so that crossing rho_t = 5 does not recompile
        return {**moment_scalars(b1, b2), "b1": b1, "eps": float(resolve(self.eps, group)), "bias_correction1": bc1,
                "bias_correction2_sqrt": math.sqrt(1.0 - b2**step),
                "adaptive": 1.0 if kind == _ADAPTIVE else 0.0, "rectified_factor": r / bc1}

    def fused_tensor(self, update, state, param, scalars, group):
        exp_avg, exp_avg_var = state["exp_avg"], state["exp_avg_var"]
        exp_avg.copy_(exp_avg * scalars["b1"] + update * scalars["one_minus_b1"])
        residual = update - exp_avg
        exp_avg_var.copy_(exp_avg_var * scalars["b2"] + residual * residual * scalars["one_minus_b2"] + scalars["eps"])
        second = exp_avg_var
        if resolve(self.amsgrad, group):
            torch.maximum(state["max_exp_avg_var"], exp_avg_var, out=state["max_exp_avg_var"])
            second = state["max_exp_avg_var"]
        if not resolve(self.rectify, group):
            return ScaleByAdam.fused_quotient(exp_avg, second, scalars)
        adaptive = scalars["adaptive"]
        denom = (exp_avg_var.sqrt() + scalars["eps"]) * adaptive + (1.0 - adaptive)  # 1 outside the adaptive branch
        return exp_avg / denom * scalars["rectified_factor"]


scale_by_belief = ScaleByBelief
