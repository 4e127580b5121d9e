"""Adam's moment estimates, bias-corrected, with torch.optim.Adam's eps placement.

Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015 (arXiv:1412.6980);
AMSGrad: Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.

    m_t = b1 m_{t-1} + (1 - b1) g_t          v_t = b2 v_{t-1} + (1 - b2) g_t^2
    u_t = (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps)        (v_t -> max_{s<=t} v_s with amsgrad)

The update is left pending as ``m_t / (sqrt(v_t) / sqrt(1 - b2^t) + eps)`` times ``1 / (1 - b1^t)``;
when nothing after it reads the values, the optimizer applies it with one ``addcdiv`` exactly as
torch.optim's multi-tensor Adam does, so the numbers are the same.
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import resolve
from gradkit.core.state import FIRST_MOMENT, SECOND_MOMENT
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, boolean, positive

__all__ = ["scale_by_adam", "ScaleByAdam"]


def moment_scalars(b1: float, b2: float) -> dict[str, float]:
    """The moment weights as scalars; ``1 - b`` is taken in double, as the unfused ops get it
    (``1 - float32(0.999)`` is off by 3e-5 relative)."""
    return {"one_minus_b1": 1.0 - b1, "b2": b2, "one_minus_b2": 1.0 - b2}


def adam_moments(ops, updates, exp_avg, exp_avg_sq, s) -> None:
    """Adam's moment updates, in place, as torch.optim's multi-tensor Adam runs them (shared by the family)."""
    ops.lerp_(exp_avg, updates, s["one_minus_b1"])
    ops.mul_(exp_avg_sq, s["b2"])
    ops.addcmul_(exp_avg_sq, updates, updates, s["one_minus_b2"])


@register_transform(
    "scale_by_adam",
    summary="Adam's bias-corrected first/second moments (optionally AMSGrad)",
    reference="Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015, arXiv:1412.6980",
)
class ScaleByAdam(GradientTransform):
    """Adam's moments and bias-corrected quotient, left pending for the optimizer's ``addcdiv``.

    Args:
        betas: ``(b1, b2)``, the moments' decay rates, each in [0, 1).
        eps: added to the bias-corrected root of the second moment (> 0).
        amsgrad: divide by the running maximum of the second moment (AMSGrad).

    ``u_t = (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps)``, ``m`` and ``v`` the EMAs of ``g`` and
    ``g^2``. References: Kingma & Ba, ICLR 2015, arXiv:1412.6980; Reddi et al., ICLR 2018 (AMSGrad).

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_adam(), gradkit.scale_by_learning_rate()),
    ...                         {"lr": 0.1})
    >>> w.grad = torch.tensor([0.5, -0.5]); opt.step(); w.detach()
    tensor([ 0.9000, -1.9000])
    """

    name = "adam"
    fusable = True
    state_kinds = {"exp_avg": FIRST_MOMENT, "exp_avg_sq": SECOND_MOMENT, "max_exp_avg_sq": SECOND_MOMENT}

    def __init__(self, betas=(0.9, 0.999), eps=1e-8, amsgrad=False):
        self.betas = betas
        self.eps = eps
        self.amsgrad = amsgrad

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        positive(self.eps, group, "eps")
        boolean(self.amsgrad, group, "amsgrad")

    def init(self, params, ctx):
        state = {
            "exp_avg": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
            "exp_avg_sq": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
        }
        if ctx.value(self.amsgrad):
            state["max_exp_avg_sq"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        return state

    def scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        return {**moment_scalars(b1, b2), "eps": float(resolve(self.eps, group)),
                "bias_correction1": 1.0 - b1**step, "bias_correction2_sqrt": math.sqrt(1.0 - b2**step)}

    def update(self, updates, state, params, ctx):
        s = ctx.scalars(self)
        second = self.update_moments(updates, state, s, ctx)
        return self.bias_corrected_quotient(state["exp_avg"], second, s, ctx)

    def predict(self, state, params, ctx):
        """The update the moments give now (XGrad's Adam prediction): no moment changes."""
        if not params:
            return []
        second = state["max_exp_avg_sq"] if ctx.value(self.amsgrad) else state["exp_avg_sq"]
        return self.bias_corrected_quotient(state["exp_avg"], second, ctx.scalars(self), ctx)

    def update_moments(self, updates, state, s, ctx):
        """Update the moments in place; return the second-moment tensors the denominator uses."""
        adam_moments(ctx.ops, updates, state["exp_avg"], state["exp_avg_sq"], s)
        return self.maybe_amsgrad(state["exp_avg_sq"], state, ctx)

    def maybe_amsgrad(self, exp_avg_sq, state, ctx):
        if not ctx.value(self.amsgrad):
            return exp_avg_sq
        ctx.ops.maximum_(state["max_exp_avg_sq"], exp_avg_sq)
        return state["max_exp_avg_sq"]

    @staticmethod
    def bias_corrected_quotient(numerator, second, s, ctx, eps=True):
        """Leave ``(numerator / (1 - b1^t)) / (sqrt(second / (1 - b2^t)) + eps)`` pending (no eps when
        ``eps`` is False)."""
        ops = ctx.ops
        denom = ops.sqrt(second)
        ops.div_(denom, s["bias_correction2_sqrt"])
        if eps:
            ops.add_(denom, s["eps"])
        out = ctx.quotient(numerator, denom)
        ctx.divide(s["bias_correction1"])
        return out


scale_by_adam = ScaleByAdam
