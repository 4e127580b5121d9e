"""diffGrad's moments: Adam whose first moment is damped by a friction coefficient from the gradient change.

Dubey, Chakraborty, Roy, Mukherjee, Singh & Chaudhuri, "diffGrad: An Optimization Method for
Convolutional Neural Networks", IEEE TNNLS 31(11), 2020 (arXiv:1909.11015); official code
https://github.com/shivram1987/diffGrad (``diffGrad_v2.py``)::

    m_t = b1 m_{t-1} + (1 - b1) g_t,       v_t = b2 v_{t-1} + (1 - b2) g_t^2
    xi_t = sigmoid(|g_{t-1} - g_t|)         (friction: in [0.5, 1), small where the gradient barely moves)
    u_t = sqrt(1 - b2^t) / (1 - b1^t) * xi_t m_t / (sqrt(v_t) + eps)

with ``g_0 = 0``. Note eps is added to the raw ``sqrt(v_t)`` (the Adam paper's placement, as the
official code), not to the bias-corrected one as in torch.optim.Adam. The official ``diffGrad.py``
has a bug that makes ``xi_t`` constant 0.5 (the previous gradient aliases the current one); its
``diffGrad_v2.py``, followed here, keeps a copy.

On CPU the step runs block by block in cache (``gradkit.transforms._blocked``): the friction and the
denominator are block-sized temporaries and the quotient lands in one fresh tensor per param.
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms.adam import fused_adam_moments, moment_scalars
from gradkit.transforms._blocked import blocked_quotient
from gradkit.transforms._checks import betas as check_betas, non_negative
from gradkit.transforms._stepwise import per_step

__all__ = ["scale_by_diffgrad", "ScaleByDiffGrad"]


@register_transform(
    "scale_by_diffgrad",
    summary="diffGrad: Adam with the first moment damped by sigmoid(|g_{t-1} - g_t|)",
    reference="Dubey et al., diffGrad: An Optimization Method for Convolutional Neural Networks, IEEE TNNLS 2020, "
              "arXiv:1909.11015; https://github.com/shivram1987/diffGrad",
)
class ScaleByDiffGrad(GradientTransform):
    name = "diffgrad"
    state_kinds = {"exp_avg": "moment", "exp_avg_sq": "moment", "previous_grad": "gradient"}

    def __init__(self, betas=(0.9, 0.999), eps=1e-8):
        self.betas = betas
        self.eps = eps

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        non_negative(self.eps, group, "eps")

    def init(self, params, ctx):
        return {k: [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
                for k in ("exp_avg", "exp_avg_sq", "previous_grad")}

    def update(self, updates, state, params, ctx):
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        eps = float(ctx.value(self.eps))

        def terms(owners, m, v, previous, grads):
            torch._foreach_lerp_(m, grads, 1.0 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, 1.0 - b2)
            friction = torch._foreach_sub(previous, grads)
            torch._foreach_abs_(friction)
            torch._foreach_sigmoid_(friction)
            torch._foreach_mul_(friction, m)
            torch._foreach_copy_(previous, grads)
            denom = torch._foreach_sqrt(v)
            torch._foreach_add_(denom, eps)
            return friction, denom

        out = blocked_quotient(ctx, terms, state["exp_avg"], state["exp_avg_sq"], state["previous_grad"], updates)
        ctx.multiply(per_step(ctx, lambda t: math.sqrt(1.0 - b2**t) / (1.0 - b1**t)))
        return out

    def fused_scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        # the interpolation weights are rounded from Python floats, as the eager ops' scalars are
        return {**moment_scalars(b1, b2), "eps": float(resolve(self.eps, group)),
                "step_size": math.sqrt(1.0 - b2**step) / (1.0 - b1**step)}

    def fused_tensor(self, update, state, param, scalars, group):
        m, v, previous = state["exp_avg"], state["exp_avg_sq"], state["previous_grad"]
        fused_adam_moments(update, m, v, scalars)
        friction = (previous - update).abs().sigmoid()
        previous.copy_(update)
        return friction * m / (v.sqrt() + scalars["eps"]) * scalars["step_size"]


scale_by_diffgrad = ScaleByDiffGrad
