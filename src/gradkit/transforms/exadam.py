"""EXAdam's moments: Adam with cross-moment debiasing terms and gradient acceleration.

Adly, "EXAdam: The Power of Adaptive Cross-Moments", arXiv:2412.20302, 2024; official code
https://github.com/AhmedMostafa16/EXAdam::

    m_t = b1 m_{t-1} + (1 - b1) g_t,     v_t = b2 v_{t-1} + (1 - b2) g_t^2
    d1  = 1 + b2^t v_t / (v_t + eps)                 (the second moment informs the first's debiasing)
    d2  = 1 + b1^t m_t^2 / (m_t^2 + eps)             (and the first the second's)
    m~  = m_t d1 / (1 - b1^t),   v~ = v_t d2 / (1 - b2^t)
    g~  = g_t d1 / (1 - b1^t)                        (gradient acceleration)
    u_t = s_t (m~ + g~) / (sqrt(v~) + eps)

with the dynamic step size ``s_t = ln(sqrt(2) sqrt(t + 1))`` of the paper when ``dynamic_step_size``
is set, else ``s_t = 1``. The official code had the dynamic step size in its first release
(2025-02) and removed it in its current version (2025-04); the current code is the default here.

Cost: the debiasing terms need about twice Adam's elementwise ops. On CPU the step runs block by
block in cache (``gradkit.transforms._blocked``), so those ops touch block-sized temporaries and main
memory sees about one read of m, v, g and one write of m, v and of the update.
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms.adam import fused_adam_moments, moment_scalars
from gradkit.transforms._blocked import blocks, is_blocked, pick
from gradkit.transforms._checks import betas as check_betas, boolean, positive
from gradkit.transforms._stepwise import per_step

__all__ = ["scale_by_exadam", "ScaleByEXAdam", "dynamic_step_size"]


def dynamic_step_size(step: int) -> float:
    """EXAdam's step-size multiplier ln(sqrt(2) sqrt(t + 1)), growing logarithmically from ln 2."""
    return math.log(math.sqrt(2.0) * math.sqrt(step + 1.0))


@register_transform(
    "scale_by_exadam",
    summary="EXAdam: Adam with cross-moment debiasing, gradient acceleration and optional dynamic step size",
    reference="Adly, EXAdam: The Power of Adaptive Cross-Moments, arXiv:2412.20302; https://github.com/AhmedMostafa16/EXAdam",
)
class ScaleByEXAdam(GradientTransform):
    name = "exadam"
    state_kinds = {"exp_avg": "moment", "exp_avg_sq": "moment"}

    def __init__(self, betas=(0.9, 0.999), eps=1e-8, dynamic_step_size=False):
        self.betas = betas
        self.eps = eps
        self.dynamic_step_size = dynamic_step_size

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        positive(self.eps, group, "eps")
        boolean(self.dynamic_step_size, group, "dynamic_step_size")

    def init(self, params, ctx):
        return {k: [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
                for k in ("exp_avg", "exp_avg_sq")}

    def update(self, updates, state, params, ctx):
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        eps = float(ctx.value(self.eps))
        m, v = state["exp_avg"], state["exp_avg_sq"]
        # With c1 = b1^t, c2 = b2^t:  d1 = (1 + c2) (1 - k2 / (v + eps)),  k2 = c2 eps / (1 + c2)
        #                              d2 = (1 + c1) (1 - k1 / (m^2 + eps)), k1 = c1 eps / (1 + c1)
        # so (m + g) d1 and v d2 take one fused op each after their sums, and the constant factors join
        # the bias corrections in the pending scale:
        #   u = (1 + c2) sqrt(bc2 / (1 + c1)) / bc1 * n / (sqrt(s) + eps sqrt(bc2 / (1 + c1)))
        # with n = (m + g)(1 - k2 / (v + eps)), s = v (1 - k1 / (m^2 + eps)), bc_i = 1 - b_i^t.
        k1 = per_step(ctx, lambda t: b1**t * eps / (1.0 + b1**t))
        k2 = per_step(ctx, lambda t: b2**t * eps / (1.0 + b2**t))
        eps_t = per_step(ctx, lambda t: eps * math.sqrt((1.0 - b2**t) / (1.0 + b1**t)))
        if is_blocked(m, v, updates):
            # CPU: the whole step runs block by block in cache and writes the quotient into one fresh
            # tensor per param, instead of parameter-sized temporaries swept through main memory.
            out = [torch.empty_like(x) for x in m]
            for owners, (m_b, v_b, g_b, out_b) in blocks(m, v, updates, out):
                _, denominator = _terms(m_b, v_b, g_b, b1, b2, eps, pick(k1, owners), pick(k2, owners),
                                        pick(eps_t, owners), numerator=out_b)
                torch._foreach_div_(out_b, denominator)
            out = ctx.fresh(out)
        else:
            out = ctx.quotient(*_terms(m, v, updates, b1, b2, eps, k1, k2, eps_t))
        ctx.multiply(per_step(ctx, lambda t: (1.0 + b2**t) * math.sqrt((1.0 - b2**t) / (1.0 + b1**t)) / (1.0 - b1**t)))
        if ctx.value(self.dynamic_step_size):
            ctx.multiply(per_step(ctx, dynamic_step_size))
        return out

    def fused_scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        eps = float(resolve(self.eps, group))
        c1, c2 = b1**step, b2**step
        # the same rearrangement as update (see the comment there); the dynamic step size, a flag, joins
        # the constant factor in Python so that the program does not depend on it
        step_size = (1.0 + c2) * math.sqrt((1.0 - c2) / (1.0 + c1)) / (1.0 - c1)
        if resolve(self.dynamic_step_size, group):
            step_size *= dynamic_step_size(step)
        return {**moment_scalars(b1, b2), "eps": eps,
                "k1": c1 * eps / (1.0 + c1), "k2": c2 * eps / (1.0 + c2),
                "eps_t": eps * math.sqrt((1.0 - c2) / (1.0 + c1)), "step_size": step_size}

    def fused_tensor(self, update, state, param, scalars, group):
        m, v = state["exp_avg"], state["exp_avg_sq"]
        fused_adam_moments(update, m, v, scalars)
        numerator = m + update
        numerator = numerator - scalars["k2"] * numerator / (v + scalars["eps"])
        second = v - scalars["k1"] * v / (m * m + scalars["eps"])
        return numerator / (second.sqrt() + scalars["eps_t"]) * scalars["step_size"]


def _terms(m, v, g, b1, b2, eps, k1, k2, eps_t, numerator=None):
    """Update the moments in place; return ``n = (m + g)(1 - k2 / (v + eps))`` (into ``numerator`` if
    given, else fresh) and a fresh ``sqrt(v (1 - k1 / (m^2 + eps))) + eps_t``."""
    torch._foreach_lerp_(m, g, 1.0 - b1)
    torch._foreach_mul_(v, b2)
    torch._foreach_addcmul_(v, g, g, 1.0 - b2)
    v_eps = torch._foreach_add(v, eps)
    if numerator is None:
        numerator = torch._foreach_add(m, g)
    else:
        torch._foreach_copy_(numerator, m)
        torch._foreach_add_(numerator, g)
    torch._foreach_addcdiv_(numerator, numerator, v_eps, _negated(k2))
    del v_eps
    m_sq_eps = torch._foreach_mul(m, m)
    torch._foreach_add_(m_sq_eps, eps)
    denominator = torch._foreach_addcdiv(v, v, m_sq_eps, _negated(k1))
    del m_sq_eps
    torch._foreach_sqrt_(denominator)
    torch._foreach_add_(denominator, eps_t)
    return numerator, denominator


def _negated(x):
    return -x if not isinstance(x, list) else [-y for y in x]


scale_by_exadam = ScaleByEXAdam
