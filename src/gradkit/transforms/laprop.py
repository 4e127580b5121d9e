"""LaProp: momentum of the RMS-normalised gradient (the momentum and adaptivity of Adam decoupled).

Ziyin, Wang & Ueda, "LaProp: Separating Momentum and Adaptivity in Adam", arXiv:2002.04839; official code
https://github.com/Z-T-WANG/LaProp-Optimizer.

    v_t = b2 v_{t-1} + (1 - b2) g_t^2
    m_t = b1 m_{t-1} + (1 - b1) g_t / (sqrt(v_t / (1 - b2^t)) + eps)
    u_t = m_t / (1 - b1^t)

Adam divides the momentum by the root; LaProp takes the momentum of the divided gradient, so the
step stays bounded for any (b1, b2). Deviation from the official code: there the learning rate is
inside the momentum (``m += (1 - b1) lr g / ...``, bias-corrected by the lr-weighted sum), so a
scheduled lr changes only new contributions; here the lr multiplies the whole update (as in the
paper's Algorithm 1 and in pytorch-optimizer). For a constant lr the two are the same. The official
``centered`` and ``amsgrad`` options are not provided.
"""
from __future__ import annotations


import torch

from gradkit.core.hyper import resolve
from gradkit.core.state import FIRST_MOMENT, SECOND_MOMENT
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, positive

__all__ = ["scale_by_laprop", "ScaleByLaProp"]


@register_transform(
    "scale_by_laprop",
    summary="LaProp: bias-corrected momentum of the gradient divided by its running RMS",
    reference="Ziyin, Wang & Ueda, LaProp: Separating Momentum and Adaptivity in Adam, arXiv:2002.04839; "
              "https://github.com/Z-T-WANG/LaProp-Optimizer",
)
class ScaleByLaProp(GradientTransform):
    """LaProp's bias-corrected momentum of ``g / (sqrt(v_hat) + eps)`` (args ``betas``, ``eps``); see the
    module docstring.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> t = gradkit.chain(gradkit.scale_by_laprop(), gradkit.scale_by_learning_rate())
    >>> opt = gradkit.Optimizer([w], t, {"lr": 0.1})
    >>> for _ in range(2):
    ...     w.grad = torch.tensor([0.5, -0.5]); opt.step()
    >>> w.detach()
    tensor([ 0.8000, -1.8000])
    """

    name = "laprop"
    state_kinds = {"exp_avg": FIRST_MOMENT, "exp_avg_sq": SECOND_MOMENT}

    def __init__(self, betas=(0.9, 0.999), eps=1e-15):
        self.betas = betas
        self.eps = eps

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        positive(self.eps, group, "eps")

    def init(self, params, ctx):
        return {"exp_avg": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
                "exp_avg_sq": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}

    def scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        return {"b1": b1, "b2": b2, "eps": float(resolve(self.eps, group)),
                "bias_correction1": 1.0 - b1**step, "bias_correction2": 1.0 - b2**step}

    def update(self, updates, state, params, ctx):
        s = ctx.scalars(self)
        b1, b2, eps = s["b1"], s["b2"], s["eps"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        torch._foreach_mul_(exp_avg_sq, b2)
        torch._foreach_addcmul_(exp_avg_sq, updates, updates, 1.0 - b2)
        denom = torch._foreach_div(exp_avg_sq, s["bias_correction2"])
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, eps)
        torch._foreach_mul_(exp_avg, b1)
        torch._foreach_addcdiv_(exp_avg, updates, denom, 1.0 - b1)
        ctx.divide(s["bias_correction1"])
        return exp_avg


scale_by_laprop = ScaleByLaProp

