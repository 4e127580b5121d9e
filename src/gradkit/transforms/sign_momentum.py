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
from gradkit.core.state import FIRST_MOMENT
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
    """Lion's update: the sign of an interpolated momentum.

    Args:
        betas: ``(b1, b2)``: the update interpolates with ``b1``, the state tracks with ``b2``.

    ``u_t = sign(b1 m_{t-1} + (1 - b1) g_t)``, ``m_t = b2 m_{t-1} + (1 - b2) g_t``. Reference: Chen et al.,
    NeurIPS 2023, arXiv:2302.06675; https://github.com/google/automl/tree/master/lion.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.sign_momentum(), gradkit.scale_by_learning_rate()),
    ...                         {"lr": 0.1})
    >>> w.grad = torch.tensor([3.0, -0.01]); opt.step(); w.detach()
    tensor([0.9000, 1.1000])
    """

    name = "sign_momentum"
    fusable = True
    state_kinds = {"exp_avg": FIRST_MOMENT}

    def __init__(self, betas=(0.9, 0.99)):
        self.betas = betas

    def validate(self, group):
        check_betas(self.betas, group, "betas")

    def init(self, params, ctx):
        return {"exp_avg": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}

    def scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        # weights rounded from Python floats as the lerps' are: a sign near zero depends on the last bit
        return {"one_minus_b1": 1.0 - b1, "one_minus_b2": 1.0 - b2}

    def update(self, updates, state, params, ctx):
        s, ops, exp_avg = ctx.scalars(self), ctx.ops, state["exp_avg"]
        out = ops.lerp(exp_avg, updates, s["one_minus_b1"])
        ops.sign_(out)
        ops.lerp_(exp_avg, updates, s["one_minus_b2"])
        return ctx.fresh(out)


sign_momentum = SignMomentum
