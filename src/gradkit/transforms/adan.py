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
from gradkit.core.state import FIRST_MOMENT, GRADIENT, SECOND_MOMENT
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, non_negative

__all__ = ["scale_by_adan", "ScaleByAdan"]


@register_transform(
    "scale_by_adan",
    summary="Adan: moments of the gradient, its difference and the squared Nesterov-corrected gradient",
    reference="Xie, Zhou, Li, Lin & Yan, Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep Models, "
              "IEEE TPAMI 2024, arXiv:2208.06677; https://github.com/sail-sg/Adan",
)
class ScaleByAdan(GradientTransform):
    """Adan's three moments and bias-corrected quotient.

    Args:
        betas: ``(b1, b2, b3)`` in the official code's convention (weights of the old values).
        eps: added to the bias-corrected root of ``n_t``.

    ``u_t = (m_t / (1 - b1^t) + b2 v_t / (1 - b2^t)) / (sqrt(n_t / (1 - b3^t)) + eps)`` (see the module
    docstring). Reference: Xie et al., IEEE TPAMI 2024, arXiv:2208.06677; https://github.com/sail-sg/Adan.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_adan(), gradkit.scale_by_learning_rate()),
    ...                         {"lr": 0.1})
    >>> w.grad = torch.tensor([2.0]); opt.step(); round(w.item(), 4)
    0.9
    """

    name = "adan"
    fusable = True
    state_kinds = {"exp_avg": FIRST_MOMENT, "exp_avg_diff": FIRST_MOMENT, "exp_avg_sq": SECOND_MOMENT,
                   "neg_prev_grad": GRADIENT}

    def __init__(self, betas=(0.98, 0.92, 0.99), eps=1e-8):
        self.betas = betas
        self.eps = eps

    def validate(self, group):
        check_betas(self.betas, group, "betas", count=3)
        non_negative(self.eps, group, "eps")

    def init(self, params, ctx):
        keys = ("exp_avg", "exp_avg_diff", "exp_avg_sq", "neg_prev_grad")
        return {k: [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params] for k in keys}

    def scalars(self, group, step):
        b1, b2, b3 = (float(b) for b in resolve(self.betas, group))
        root_bc3 = math.sqrt(1.0 - b3**step)
        # sqrt(n / bc3) + eps = (sqrt(n) + eps sqrt(bc3)) / sqrt(bc3), and m / bc1 + b2 v / bc2 =
        # (m + v * b2 bc1 / bc2) / bc1: the two corrections join one divisor
        return {"one_minus_b1": 1.0 - b1, "b2": b2, "one_minus_b2": 1.0 - b2, "b3": b3, "one_minus_b3": 1.0 - b3,
                "keep_prev": 0.0 if step == 1 else 1.0,  # d_1 = 0: no previous gradient yet
                "eps_root_bc3": float(resolve(self.eps, group)) * root_bc3,
                "diff_ratio": b2 * (1.0 - b1**step) / (1.0 - b2**step),
                "divisor": (1.0 - b1**step) / root_bc3}

    def update(self, updates, state, params, ctx):
        s, ops = ctx.scalars(self), ctx.ops
        m, v, n, diff = state["exp_avg"], state["exp_avg_diff"], state["exp_avg_sq"], state["neg_prev_grad"]
        ops.add_(diff, updates)  # d_t = g_t - g_{t-1}, in the buffer that held -g_{t-1}
        ops.mul_(diff, s["keep_prev"])
        ops.lerp_(m, updates, s["one_minus_b1"])
        ops.lerp_(v, diff, s["one_minus_b2"])
        ops.mul_(diff, s["b2"])
        ops.add_(diff, updates)  # g_t + b2 d_t
        ops.mul_(n, s["b3"])
        ops.addcmul_(n, diff, diff, s["one_minus_b3"])
        ops.copy_(diff, updates)
        ops.neg_(diff)  # keep -g_t for the next difference
        denom = ops.sqrt(n)
        ops.add_(denom, s["eps_root_bc3"])
        numerator = ops.add(m, v, alpha=s["diff_ratio"])
        out = ctx.quotient(numerator, denom, owned=True)
        ctx.divide(s["divisor"])
        return out


scale_by_adan = ScaleByAdan
