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
from gradkit.core.state import FIRST_MOMENT, SECOND_MOMENT
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms.adam import adam_moments, moment_scalars
from gradkit.transforms._blocked import blocked_quotient, pick
from gradkit.transforms._checks import betas as check_betas, boolean, positive

__all__ = ["scale_by_exadam", "ScaleByEXAdam", "dynamic_step_size"]


def dynamic_step_size(step: int) -> float:
    """EXAdam's step-size multiplier ln(sqrt(2) sqrt(t + 1)), growing logarithmically from ln 2.

    >>> round(dynamic_step_size(1), 4)  # ln 2
    0.6931
    """
    return math.log(math.sqrt(2.0) * math.sqrt(step + 1.0))


@register_transform(
    "scale_by_exadam",
    summary="EXAdam: Adam with cross-moment debiasing, gradient acceleration and optional dynamic step size",
    reference="Adly, EXAdam: The Power of Adaptive Cross-Moments, arXiv:2412.20302; https://github.com/AhmedMostafa16/EXAdam",
)
class ScaleByEXAdam(GradientTransform):
    """EXAdam's moments: Adam with cross-moment debiasing, gradient acceleration and a dynamic step size.

    Args:
        betas: ``(b1, b2)`` in [0, 1).
        eps: added inside the debiasing terms and to the root (> 0).
        dynamic_step_size: multiply by ``ln(sqrt(2) sqrt(t + 1))`` (the paper and first official release).

    ``u_t = s_t (m~ + g~) / (sqrt(v~) + eps)`` with the cross-debiased moments of the module docstring.
    Reference: Adly, arXiv:2412.20302; https://github.com/AhmedMostafa16/EXAdam.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.zeros(2))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_exadam(), gradkit.scale_by_learning_rate()),
    ...                         {"lr": 0.1})
    >>> w.grad = torch.tensor([1.0, -1.0]); opt.step(); bool(w[0] < 0 < w[1])
    True
    """

    name = "exadam"
    fusable = True
    state_kinds = {"exp_avg": FIRST_MOMENT, "exp_avg_sq": SECOND_MOMENT}

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

    def scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        eps = float(resolve(self.eps, group))
        c1, c2 = b1**step, b2**step
        # With c1 = b1^t, c2 = b2^t:  d1 = (1 + c2) (1 - k2 / (v + eps)),  k2 = c2 eps / (1 + c2)
        #                              d2 = (1 + c1) (1 - k1 / (m^2 + eps)), k1 = c1 eps / (1 + c1)
        # so (m + g) d1 and v d2 take one fused op each after their sums, and the constant factors join
        # the bias corrections (and the dynamic step size, a flag) in one scalar:
        #   u = (1 + c2) sqrt(bc2 / (1 + c1)) / bc1 * n / (sqrt(s) + eps sqrt(bc2 / (1 + c1)))
        # with n = (m + g)(1 - k2 / (v + eps)), s = v (1 - k1 / (m^2 + eps)), bc_i = 1 - b_i^t.
        step_size = (1.0 + c2) * math.sqrt((1.0 - c2) / (1.0 + c1)) / (1.0 - c1)
        if resolve(self.dynamic_step_size, group):
            step_size *= dynamic_step_size(step)
        return {**moment_scalars(b1, b2), "eps": eps,
                "neg_k1": -(c1 * eps / (1.0 + c1)), "neg_k2": -(c2 * eps / (1.0 + c2)),
                "eps_t": eps * math.sqrt((1.0 - c2) / (1.0 + c1)), "step_size": step_size}

    def update(self, updates, state, params, ctx):
        s, ops = ctx.scalars(self), ctx.ops

        def terms(owners, m, v, g, out=None):
            """Update the moments; return ``n = (m + g)(1 - k2 / (v + eps))`` (into ``out`` when given) and
            ``sqrt(v (1 - k1 / (m^2 + eps))) + eps_t``."""
            own = {k: pick(value, owners) for k, value in s.items()}
            adam_moments(ops, g, m, v, own)
            v_eps = ops.add(v, own["eps"])
            if out is None:
                numerator = ops.add(m, g)
            else:
                ops.copy_(out, m)
                ops.add_(out, g)
                numerator = out
            ops.addcdiv_(numerator, numerator, v_eps, own["neg_k2"])
            del v_eps
            m_sq_eps = ops.mul(m, m)
            ops.add_(m_sq_eps, own["eps"])
            denominator = ops.addcdiv(v, v, m_sq_eps, own["neg_k1"])
            del m_sq_eps
            ops.sqrt_(denominator)
            ops.add_(denominator, own["eps_t"])
            return numerator, denominator

        out = blocked_quotient(ctx, terms, state["exp_avg"], state["exp_avg_sq"], updates, owned=True)
        ctx.multiply(s["step_size"])
        return out


scale_by_exadam = ScaleByEXAdam
