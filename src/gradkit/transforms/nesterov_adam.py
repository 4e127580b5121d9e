"""Adam with a Nesterov look-ahead numerator, as AdamP's ``nesterov`` option.

Heo et al., "AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights",
ICLR 2021, arXiv:2006.08217; official code https://github.com/clovaai/AdamP. The moments are Adam's
(Kingma & Ba, ICLR 2015); with ``nesterov=True`` the numerator looks one step ahead::

    u_t = (b1 m_t + (1 - b1) g_t) / (1 - b1^t) / (sqrt(v_t / (1 - b2^t)) + eps)

This is the official AdamP code's form (no momentum schedule, unlike NAdam). With ``nesterov=False``
it is ``scale_by_adam`` (the moments are updated with multiply-add as in the official code rather
than ``lerp``, which changes the last bit); the state layout is the same, so the flag may change per
group.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import resolve
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean
from gradkit.transforms.adam import ScaleByAdam

__all__ = ["scale_by_nesterov_adam", "ScaleByNesterovAdam"]


@register_transform(
    "scale_by_nesterov_adam",
    summary="Adam whose numerator looks ahead, b1 m_t + (1 - b1) g_t (AdamP's nesterov option)",
    reference="Heo et al., AdamP, ICLR 2021, arXiv:2006.08217; https://github.com/clovaai/AdamP",
)
class ScaleByNesterovAdam(ScaleByAdam):
    def __init__(self, betas=(0.9, 0.999), eps=1e-8, nesterov=True):
        super().__init__(betas, eps, amsgrad=False)
        self.nesterov = nesterov

    def validate(self, group):
        super().validate(group)
        boolean(self.nesterov, group, "nesterov")

    def update(self, updates, state, params, ctx):
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        eps = float(ctx.value(self.eps))
        second = self.update_moments(updates, state, b1, b2, eps, ctx)
        numerator = state["exp_avg"]
        if ctx.value(self.nesterov):
            numerator = torch._foreach_lerp(numerator, updates, 1.0 - b1)  # b1 m_t + (1 - b1) g_t, one pass
        return self.bias_corrected_quotient(numerator, second, b1, b2, eps, ctx)

    def fused_tensor(self, update, state, param, scalars, group):
        second = self.fused_moments(update, state, scalars, group)
        numerator = state["exp_avg"]
        if resolve(self.nesterov, group):
            numerator = numerator.lerp(update, scalars["one_minus_b1"])
        return self.fused_quotient(numerator, second, scalars)


scale_by_nesterov_adam = ScaleByNesterovAdam
