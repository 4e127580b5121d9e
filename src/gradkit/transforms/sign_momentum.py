"""Sign of an interpolated momentum: Lion's update, as a transform.

Chen, Liang, Huang, Real, Wang, Pham, Dong, Luong, Hsieh, Lu & Le, "Symbolic Discovery of
Optimization Algorithms", NeurIPS 2023, arXiv:2302.06675; official code
https://github.com/google/automl/tree/master/lion::

    u_t = sign(b1 m_{t-1} + (1 - b1) g_t)        (the update interpolates with b1 ...)
    m_t = b2 m_{t-1} + (1 - b2) g_t              (... the state tracks with b2)

One state tensor per parameter (half of Adam's). The interpolations use ``lerp`` (as
``lion-pytorch`` and ``pytorch_optimizer``); the official code's multiply-add can differ in the last
bit, which changes a sign only where the interpolated momentum is within rounding of zero.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas

__all__ = ["sign_momentum", "SignMomentum"]


@register_transform(
    "sign_momentum",
    summary="sign(b1 m + (1 - b1) g) with an EMA m of rate b2 (Lion's update)",
    reference="Chen et al., Symbolic Discovery of Optimization Algorithms, NeurIPS 2023, arXiv:2302.06675; "
              "https://github.com/google/automl/tree/master/lion",
)
class SignMomentum(GradientTransform):
    name = "sign_momentum"
    state_kinds = {"exp_avg": "moment"}

    def __init__(self, betas=(0.9, 0.99)):
        self.betas = betas

    def validate(self, group):
        check_betas(self.betas, group, "betas")

    def init(self, params, ctx):
        return {"exp_avg": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}

    def update(self, updates, state, params, ctx):
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        exp_avg = state["exp_avg"]
        out = torch._foreach_lerp(exp_avg, updates, 1.0 - b1)
        torch._foreach_sign_(out)
        torch._foreach_lerp_(exp_avg, updates, 1.0 - b2)
        return ctx.fresh(out)

    def fused_scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        # weights rounded from Python floats as the eager lerps' are: a sign near zero depends on the last bit
        return {"one_minus_b1": 1.0 - b1, "one_minus_b2": 1.0 - b2}

    def fused_tensor(self, update, state, param, scalars, group):
        exp_avg = state["exp_avg"]
        out = torch.lerp(exp_avg, update, scalars["one_minus_b1"]).sign()
        exp_avg.lerp_(update, scalars["one_minus_b2"])
        return out


sign_momentum = SignMomentum
