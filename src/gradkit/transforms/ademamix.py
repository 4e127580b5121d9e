"""AdEMAMix: Adam whose numerator mixes the fast EMA with a slow, un-debiased EMA of the gradient.

Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", ICLR 2025,
arXiv:2409.03137; official code https://github.com/apple/ml-ademamix::

    m1_t = b1 m1_{t-1} + (1 - b1) g_t                 (fast EMA; absent when b1 == 0: m1_t = g_t)
    m2_t = b3(t) m2_{t-1} + (1 - b3(t)) g_t           (slow EMA, not bias-corrected)
    nu_t = b2 nu_{t-1} + (1 - b2) g_t^2
    u_t  = (m1_t / (1 - b1^t) + alpha(t) m2_t) / (sqrt(nu_t / (1 - b2^t)) + eps)

Schedulers (the paper's Eq. for f_alpha and f_beta3; beta_start = b1), for t < T:

    alpha(t) = t alpha / T_alpha
    b3(t)    = f^{-1}((1 - t / T_b3) f(b1) + (t / T_b3) f(b3)),  f(b) = ln(0.5) / ln(b) - 1

i.e. the half-life of the slow EMA grows linearly. As in the official PyTorch code ``t`` is the
1-based step and ``f`` takes ``ln(b + 1e-8)``. With ``b1 == 0`` (at initialisation) no fast EMA is
stored, which saves a third of the state, as the official code does.
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import check_hyper, resolve
from gradkit.core.state import FIRST_MOMENT, SECOND_MOMENT
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms.adam import moment_scalars
from gradkit.transforms._checks import betas as check_betas, non_negative

__all__ = ["scale_by_ademamix", "ScaleByAdEMAMix", "alpha_warmup", "beta3_warmup"]


def alpha_warmup(step: int, alpha: float, warmup: int | None) -> float:
    """Linear warm-up of alpha from 0 over ``warmup`` steps (``None``: constant): ``alpha(t) = t alpha / T``.

    >>> alpha_warmup(5, 2.0, 10), alpha_warmup(20, 2.0, 10), alpha_warmup(1, 2.0, None)
    (1.0, 2.0, 2.0)
    """
    if warmup is None or step >= warmup:
        return alpha
    return step / float(warmup) * alpha


def beta3_warmup(step: int, beta3: float, beta_start: float, warmup: int | None) -> float:
    """Warm-up of beta3 from ``beta_start`` that grows the EMA's half-life linearly (``None``: constant).

    >>> round(beta3_warmup(0, 0.9999, 0.9, 100), 4), beta3_warmup(100, 0.9999, 0.9, 100)
    (0.9, 0.9999)
    """
    if warmup is None or step >= warmup:
        return beta3

    def half_life(beta):
        return math.log(0.5) / math.log(beta + 1e-8) - 1.0

    a = step / float(warmup)
    return math.pow(0.5, 1.0 / ((1.0 - a) * half_life(beta_start) + a * half_life(beta3) + 1.0))


def _warmup_steps(value, group, name):
    return check_hyper(value, group, name, lambda w: w is None or (isinstance(w, int) and not isinstance(w, bool) and w > 0),
                       "None or an int > 0")


@register_transform(
    "scale_by_ademamix",
    summary="AdEMAMix: Adam with a mixture of a fast and a slow gradient EMA (alpha and beta3 warm-ups)",
    reference="Pagliardini, Ablin & Grangier, The AdEMAMix Optimizer: Better, Faster, Older, ICLR 2025, "
              "arXiv:2409.03137; https://github.com/apple/ml-ademamix",
)
class ScaleByAdEMAMix(GradientTransform):
    """AdEMAMix's moments: Adam whose numerator adds a slow, un-debiased EMA.

    Args:
        betas: ``(b1, b2, b3)``: fast EMA, second moment, slow EMA (``b1 == 0``: no fast EMA is stored).
        alpha: weight of the slow EMA.
        beta3_warmup, alpha_warmup: steps of the b3 and alpha warm-ups (``None``: constant).
        eps: added to the bias-corrected root of the second moment.

    ``u_t = (m1_t / (1 - b1^t) + alpha(t) m2_t) / (sqrt(nu_t / (1 - b2^t)) + eps)``. Reference: Pagliardini,
    Ablin & Grangier, ICLR 2025, arXiv:2409.03137; https://github.com/apple/ml-ademamix.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_ademamix(alpha=0.0), gradkit.scale_by_learning_rate()),
    ...                         {"lr": 0.1})
    >>> w.grad = torch.tensor([2.0]); opt.step(); round(w.item(), 4)  # alpha = 0: Adam's first step
    0.9
    """

    name = "ademamix"
    fusable = True
    state_kinds = {"exp_avg_fast": FIRST_MOMENT, "exp_avg_slow": FIRST_MOMENT, "exp_avg_sq": SECOND_MOMENT}

    def __init__(self, betas=(0.9, 0.999, 0.9999), alpha=2.0, beta3_warmup=None, alpha_warmup=None, eps=1e-8):
        self.betas = betas
        self.alpha = alpha
        self.beta3_warmup = beta3_warmup
        self.alpha_warmup = alpha_warmup
        self.eps = eps

    def validate(self, group):
        check_betas(self.betas, group, "betas", count=3)
        non_negative(self.alpha, group, "alpha")
        _warmup_steps(self.beta3_warmup, group, "beta3_warmup")
        _warmup_steps(self.alpha_warmup, group, "alpha_warmup")
        non_negative(self.eps, group, "eps")

    def init(self, params, ctx):
        state = {k: [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
                 for k in ("exp_avg_slow", "exp_avg_sq")}
        if float(ctx.value(self.betas)[0]) != 0.0:
            state["exp_avg_fast"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        return state

    def scalars(self, group, step):
        b1, b2, b3_final = (float(b) for b in resolve(self.betas, group))
        b3 = beta3_warmup(step, b3_final, b1, resolve(self.beta3_warmup, group))
        # 1 - b in float64: 1 - float32(0.9999) is off by up to 3e-4 relative
        return {**moment_scalars(b1, b2), "one_minus_b3": 1.0 - b3, "b1_is_zero": float(b1 == 0.0),
                "eps": float(resolve(self.eps, group)),
                "alpha": alpha_warmup(step, float(resolve(self.alpha, group)), resolve(self.alpha_warmup, group)),
                "bias_correction1": 1.0 - b1**step, "bias_correction2_sqrt": math.sqrt(1.0 - b2**step)}

    def update(self, updates, state, params, ctx):
        s, ops = ctx.scalars(self), ctx.ops
        fast, slow, sq = state.get("exp_avg_fast"), state["exp_avg_slow"], state["exp_avg_sq"]
        if not ctx.traced and (s["b1_is_zero"] == 0.0) != (fast is not None):
            # (the fused step cannot check this without compiling betas[0] in: the layout decides there)
            raise ValueError("betas[0] changed between 0 and non-zero after the state was created; the fast EMA "
                             "exists only when betas[0] != 0 at the first step")
        if fast is not None:
            ops.lerp_(fast, updates, s["one_minus_b1"])
        ops.lerp_(slow, updates, s["one_minus_b3"])
        numerator = ops.div(fast, s["bias_correction1"]) if fast is not None else ops.clone(updates)
        ops.add_(numerator, slow, alpha=s["alpha"])
        ops.mul_(sq, s["b2"])
        ops.addcmul_(sq, updates, updates, s["one_minus_b2"])
        denom = ops.sqrt(sq)
        ops.div_(denom, s["bias_correction2_sqrt"])
        ops.add_(denom, s["eps"])
        return ctx.quotient(numerator, denom, owned=True)


scale_by_ademamix = ScaleByAdEMAMix
