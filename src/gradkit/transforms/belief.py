"""AdaBelief's moments: the second moment tracks the belief (g - m)^2 instead of g^2.

Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris & Duncan, "AdaBelief Optimizer: Adapting
Stepsizes by the Belief in Observed Gradients", NeurIPS 2020, arXiv:2010.07468; official code
https://github.com/juntang-zhuang/Adabelief-Optimizer (package ``adabelief-pytorch``, 0.2)::

    m_t = b1 m_{t-1} + (1 - b1) g_t
    s_t = b2 s_{t-1} + (1 - b2) (g_t - m_t)^2 + eps        (eps is added to the stored state)
    s_t -> max(s_max, s_t) with amsgrad
    u_t = m_t / (1 - b1^t) / (sqrt(s_t / (1 - b2^t)) + eps)

As the official package, eps enters twice (inside ``s_t``, cumulatively, and outside the root).
With ``rectify`` (RAdam, Liu et al., ICLR 2020) the step depends on the length of the approximated
simple moving average rho_t = rho_inf - 2 t b2^t / (1 - b2^t), rho_inf = 2 / (1 - b2) - 1::

    rho_t >= 5:                u_t = r_t m_t / (1 - b1^t) / (sqrt(s_t) + eps),
                               r_t = sqrt((1 - b2^t)(rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
    else, degenerated_to_sgd:  u_t = m_t / (1 - b1^t)
    else:                      u_t = 0

Following the official code, the rectified branch divides by ``sqrt(s_t)`` even with ``amsgrad``
(the maximum is kept but used only without rectification).
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import resolve
from gradkit.core.state import FIRST_MOMENT, SECOND_MOMENT
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, boolean, non_negative
from gradkit.transforms.adam import ScaleByAdam, moment_scalars

__all__ = ["scale_by_belief", "ScaleByBelief", "rectification"]

_ADAPTIVE, _SGD, _NONE = "adaptive", "sgd", "none"


def rectification(b2: float, step: int, degenerated_to_sgd: bool) -> tuple[str, float]:
    """RAdam's branch and factor r_t at ``step`` (the factor excludes the 1 / (1 - b1^t) correction).

    ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)``; adaptive once ``rho_t >= 5`` (Liu et al., ICLR 2020).

    >>> rectification(0.999, 1, True), rectification(0.999, 1, False)
    (('sgd', 1.0), ('none', 0.0))
    >>> kind, r = rectification(0.999, 1000, True); kind, round(r, 3)
    ('adaptive', 0.513)
    """
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    b2_t = b2**step
    rho = rho_inf - 2.0 * step * b2_t / (1.0 - b2_t)
    if rho >= 5:
        return _ADAPTIVE, math.sqrt((1.0 - b2_t) * (rho - 4) / (rho_inf - 4) * (rho - 2) / rho * rho_inf / (rho_inf - 2))
    return (_SGD, 1.0) if degenerated_to_sgd else (_NONE, 0.0)


@register_transform(
    "scale_by_belief",
    summary="AdaBelief: Adam with the second moment of the gradient's deviation from its EMA (rectify, amsgrad)",
    reference="Zhuang et al., AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients, NeurIPS 2020, "
              "arXiv:2010.07468; https://github.com/juntang-zhuang/Adabelief-Optimizer",
)
class ScaleByBelief(GradientTransform):
    """AdaBelief's moments, optionally rectified (RAdam) and with AMSGrad.

    Args:
        betas: ``(b1, b2)`` in [0, 1).
        eps: added inside the second moment and outside its root (as the official package).
        amsgrad: divide by the running maximum of the second moment (unrectified branch only).
        rectify: RAdam's variance rectification.
        degenerated_to_sgd: before the rectification applies, take bias-corrected momentum steps (else none).

    ``s_t = b2 s_{t-1} + (1 - b2) (g_t - m_t)^2 + eps``, ``u_t = m_hat_t / (sqrt(s_hat_t) + eps)`` (see the
    module docstring for the rectified form). Reference: Zhuang et al., NeurIPS 2020, arXiv:2010.07468;
    https://github.com/juntang-zhuang/Adabelief-Optimizer.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_belief(), gradkit.scale_by_learning_rate()),
    ...                         {"lr": 0.1})
    >>> w.grad = torch.tensor([2.0]); opt.step(); round(w.item(), 4)  # rectified: an SGD step of m_hat = g
    0.8
    """

    name = "belief"
    fusable = True
    state_kinds = {"exp_avg": FIRST_MOMENT, "exp_avg_var": SECOND_MOMENT, "max_exp_avg_var": SECOND_MOMENT}

    def __init__(self, betas=(0.9, 0.999), eps=1e-16, amsgrad=False, rectify=True, degenerated_to_sgd=True):
        self.betas = betas
        self.eps = eps
        self.amsgrad = amsgrad
        self.rectify = rectify
        self.degenerated_to_sgd = degenerated_to_sgd

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        non_negative(self.eps, group, "eps")
        boolean(self.amsgrad, group, "amsgrad")
        boolean(self.rectify, group, "rectify")
        boolean(self.degenerated_to_sgd, group, "degenerated_to_sgd")

    def init(self, params, ctx):
        state = {
            "exp_avg": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
            "exp_avg_var": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
        }
        if ctx.value(self.amsgrad):
            state["max_exp_avg_var"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        return state

    def scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        bc1 = 1.0 - b1**step
        kind, r = rectification(b2, step, bool(resolve(self.degenerated_to_sgd, group)))
        # the rectified branch is a 0/1 weight, so that crossing rho_t = 5 is data, not code
        return {**moment_scalars(b1, b2), "b1": b1, "eps": float(resolve(self.eps, group)), "bias_correction1": bc1,
                "bias_correction2_sqrt": math.sqrt(1.0 - b2**step),
                "adaptive": 1.0 if kind == _ADAPTIVE else 0.0, "not_adaptive": 0.0 if kind == _ADAPTIVE else 1.0,
                "rectified_factor": r / bc1}

    def update(self, updates, state, params, ctx):
        s, ops = ctx.scalars(self), ctx.ops
        exp_avg, exp_avg_var = state["exp_avg"], state["exp_avg_var"]
        ops.mul_(exp_avg, s["b1"])
        ops.add_(exp_avg, updates, alpha=s["one_minus_b1"])
        residual = ops.sub(updates, exp_avg)
        ops.mul_(exp_avg_var, s["b2"])
        ops.addcmul_(exp_avg_var, residual, residual, s["one_minus_b2"])
        del residual
        ops.add_(exp_avg_var, s["eps"])
        second = exp_avg_var
        if ctx.value(self.amsgrad):
            ops.maximum_(state["max_exp_avg_var"], exp_avg_var)
            second = state["max_exp_avg_var"]
        if not ctx.value(self.rectify):
            return ScaleByAdam.bias_corrected_quotient(exp_avg, second, s, ctx)
        # u = m * r / bc1 / d with d = sqrt(s) + eps in the adaptive branch and 1 outside it (the official
        # code divides by sqrt(s) without the maximum here even with amsgrad)
        denom = ops.sqrt(exp_avg_var)
        ops.add_(denom, s["eps"])
        ops.mul_(denom, s["adaptive"])
        ops.add_(denom, s["not_adaptive"])
        out = ctx.quotient(exp_avg, denom)
        ctx.multiply(s["rectified_factor"])
        return out


scale_by_belief = ScaleByBelief
