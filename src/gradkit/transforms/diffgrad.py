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
from gradkit.core.state import FIRST_MOMENT, GRADIENT, SECOND_MOMENT
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms.adam import adam_moments, moment_scalars
from gradkit.transforms._blocked import blocked_quotient, pick
from gradkit.transforms._checks import betas as check_betas, non_negative

__all__ = ["scale_by_diffgrad", "ScaleByDiffGrad"]


@register_transform(
    "scale_by_diffgrad",
    summary="diffGrad: Adam with the first moment damped by sigmoid(|g_{t-1} - g_t|)",
    reference="Dubey et al., diffGrad: An Optimization Method for Convolutional Neural Networks, IEEE TNNLS 2020, "
              "arXiv:1909.11015; https://github.com/shivram1987/diffGrad",
)
class ScaleByDiffGrad(GradientTransform):
    """diffGrad's moments: Adam with the first moment damped by the friction ``sigmoid(|g_{t-1} - g_t|)``.

    Args:
        betas: ``(b1, b2)`` in [0, 1).
        eps: added to the raw ``sqrt(v_t)`` (the official code's placement).

    ``u_t = sqrt(1 - b2^t) / (1 - b1^t) * xi_t m_t / (sqrt(v_t) + eps)``. Reference: Dubey et al., IEEE TNNLS
    2020, arXiv:1909.11015; https://github.com/shivram1987/diffGrad (``diffGrad_v2.py``).

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_diffgrad(), gradkit.scale_by_learning_rate()),
    ...                         {"lr": 0.1})
    >>> w.grad = torch.tensor([2.0]); opt.step(); round(w.item(), 4)  # friction sigmoid(2) on Adam's step
    0.9119
    """

    name = "diffgrad"
    fusable = True
    state_kinds = {"exp_avg": FIRST_MOMENT, "exp_avg_sq": SECOND_MOMENT, "previous_grad": GRADIENT}

    def __init__(self, betas=(0.9, 0.999), eps=1e-8):
        self.betas = betas
        self.eps = eps

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        non_negative(self.eps, group, "eps")

    def init(self, params, ctx):
        return {k: [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
                for k in ("exp_avg", "exp_avg_sq", "previous_grad")}

    def scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        return {**moment_scalars(b1, b2), "eps": float(resolve(self.eps, group)),
                "step_size": math.sqrt(1.0 - b2**step) / (1.0 - b1**step)}

    def update(self, updates, state, params, ctx):
        s, ops = ctx.scalars(self), ctx.ops

        def terms(owners, m, v, previous, grads, out=None):
            adam_moments(ops, grads, m, v, {k: pick(s[k], owners) for k in ("one_minus_b1", "b2", "one_minus_b2")})
            friction = ops.sub(previous, grads)
            ops.abs_(friction)
            ops.sigmoid_(friction)
            ops.mul_(friction, m)
            ops.copy_(previous, grads)
            denom = ops.sqrt(v)
            ops.add_(denom, pick(s["eps"], owners))
            return friction, denom

        out = blocked_quotient(ctx, terms, state["exp_avg"], state["exp_avg_sq"], state["previous_grad"], updates,
                               owned=True)
        ctx.multiply(s["step_size"])
        return out


scale_by_diffgrad = ScaleByDiffGrad
