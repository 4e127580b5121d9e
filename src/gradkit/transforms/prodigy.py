"""Prodigy: Adam whose step size d is estimated from the distance travelled (parameter-free).

Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner", ICML 2024,
arXiv:2306.06101; official code https://github.com/konstmish/prodigy (package ``prodigyopt``).

With d_0 > 0, the initial point x_0 and lr (1.0 by default; a multiplier of the estimate)::

    dlr_k   = d_k * lr * bc_k       bc_k = sqrt(1 - b2^(k+1)) / (1 - b1^(k+1)) if use_bias_correction else 1
    r_k     = b3 r_{k-1} + (d_k / d_0) dlr_k <g_k, x_0 - x_k>                 (summed over the group)
    s_k     = b3 s_{k-1} + (d_k / d_0) dlr_k g_k            ((d_k / d_0) d_k g_k with safeguard_warmup)
    m_k     = b1 m_{k-1} + (1 - b1) d_k g_k                 v_k = b2 v_{k-1} + (1 - b2) d_k^2 g_k^2
    d_hat   = d_coef r_k / sum ||s_k||_1
    d_{k+1} = min(d_max, growth_rate * d_k),  d_max = max(d_max, d_hat)   (and d <- max(d, d_hat) while d = d_0)
    x_{k+1} = x_k - dlr_k (m_k / (sqrt(v_k) + d_{k+1} eps) + wd x_k)      (decouple=True; else wd x_k joins g_k)

b3 defaults to sqrt(b2). As in the official code, when every gradient is zero (sum ||s||_1 = 0) the
step leaves the params and the estimate unchanged. The estimate d, its maximum, r and the step count k
are group-level state (saved in the state_dict). Deviations: the official code shares one d across
all param groups (and allows only lr 0 besides the common lr); here each param group has its own
estimate, which is the same for one group. ``slice_p`` (estimating on every p-th element) is not
provided; under FSDP2 the group sums are completed over the mesh (``shard_aware``). The lr multiplies
the whole step through ``scale_by_learning_rate``, so the update handed on is ``d_k bc_k (m / denom + wd x)`` and a step with lr 0 moves nothing.
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import check_hyper
from gradkit.core.state import FIRST_MOMENT, ITERATE, PER_TENSOR, SECOND_MOMENT
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, boolean, non_negative, positive
from gradkit.transforms._reduce import dot_sum, l1_sum

__all__ = ["scale_by_prodigy", "ScaleByProdigy"]


def _growth(value, group, name):
    return float(check_hyper(value, group, name, lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)
                             and float(x) >= 1.0, "a number >= 1 (math.inf for no limit)"))


def _beta3(value, group):
    return check_hyper(value, group, "beta3", lambda x: x is None or (isinstance(x, (int, float)) and 0 <= x < 1),
                       "None or in [0, 1)")


@register_transform(
    "scale_by_prodigy",
    summary="Prodigy: Adam with the step size d estimated from the distance to the initial point",
    reference="Mishchenko & Defazio, Prodigy: An Expeditiously Adaptive Parameter-Free Learner, ICML 2024, "
              "arXiv:2306.06101; https://github.com/konstmish/prodigy",
)
class ScaleByProdigy(GradientTransform):
    """Prodigy (args as ``prodigyopt.Prodigy``); ``d`` is group-level state.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> t = gradkit.chain(gradkit.scale_by_prodigy(lr=1.0, d0=0.01), gradkit.scale_by_learning_rate())
    >>> opt = gradkit.Optimizer([w], t, {"lr": 0.1})
    >>> for _ in range(2):
    ...     w.grad = torch.tensor([0.5, -0.5]); opt.step()
    >>> w.detach()
    tensor([ 0.9926, -1.9926])
    """

    name = "prodigy"
    kind = PER_TENSOR
    shard_aware = True  # its group sums over local shards are completed over the mesh (ctx.shards)
    group_state_keys = ("d", "d_max", "d_numerator", "k")
    state_kinds = {"s": FIRST_MOMENT, "p0": ITERATE, "exp_avg": FIRST_MOMENT, "exp_avg_sq": SECOND_MOMENT}

    def spans_params(self, group):
        return True  # its estimate sums over the whole group

    def __init__(self, lr, betas=(0.9, 0.999), beta3=None, eps=1e-8, weight_decay=0.0, decouple=True, d0=1e-6, d_coef=1.0,
                 growth_rate=math.inf, use_bias_correction=False, safeguard_warmup=False):
        self.lr = lr
        self.betas = betas
        self.beta3 = beta3
        self.eps = eps
        self.weight_decay = weight_decay
        self.decouple = decouple
        self.d0 = d0
        self.d_coef = d_coef
        self.growth_rate = growth_rate
        self.use_bias_correction = use_bias_correction
        self.safeguard_warmup = safeguard_warmup

    def validate(self, group):
        non_negative(self.lr, group, "lr")
        check_betas(self.betas, group, "betas")
        _beta3(self.beta3, group)
        positive(self.eps, group, "eps")
        non_negative(self.weight_decay, group, "weight_decay")
        boolean(self.decouple, group, "decouple")
        positive(self.d0, group, "d0")
        positive(self.d_coef, group, "d_coef")
        _growth(self.growth_rate, group, "growth_rate")
        boolean(self.use_bias_correction, group, "use_bias_correction")
        boolean(self.safeguard_warmup, group, "safeguard_warmup")

    def init(self, params, ctx):
        b1 = float(ctx.value(self.betas)[0])
        state = {"s": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
                 "p0": [p.detach().clone(memory_format=torch.preserve_format) for p in params],
                 "exp_avg_sq": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}
        if b1 > 0:
            state["exp_avg"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        return state

    def update(self, updates, state, params, ctx):
        lr = float(ctx.value(self.lr))
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        b3 = ctx.value(self.beta3)
        b3 = math.sqrt(b2) if b3 is None else float(b3)
        d0 = float(ctx.value(self.d0))
        est = ctx.group_state
        if not est:
            est.update(d=d0, d_max=d0, d_numerator=0.0, k=0)
        d, k = est["d"], est["k"]
        d_step = d
        bc = math.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1)) if ctx.value(self.use_bias_correction) else 1.0
        dlr = d * lr * bc
        d_numerator = est["d_numerator"] * b3
        if lr > 0.0:
            to_start = torch._foreach_sub(state["p0"], params)
            delta = dot_sum(updates, to_start, ctx.shards)
            if b1 > 0:
                ctx.ops.mul_(state["exp_avg"], b1)
                torch._foreach_add_(state["exp_avg"], updates, alpha=d * (1 - b1))
            ctx.ops.mul_(state["exp_avg_sq"], b2)
            torch._foreach_addcmul_(state["exp_avg_sq"], updates, updates, d * d * (1 - b2))
            ctx.ops.mul_(state["s"], b3)
            weight = (d / d0) * (d if ctx.value(self.safeguard_warmup) else dlr)
            torch._foreach_add_(state["s"], updates, alpha=weight)
            delta, d_denom = torch.stack([delta, l1_sum(state["s"], ctx.shards)]).tolist()
            delta *= (d / d0) * dlr
        else:
            delta, d_denom = 0.0, l1_sum(state["s"], ctx.shards).item()
        if d_denom == 0.0:  # no gradient so far: nothing moves, nothing is estimated
            ctx.multiply(0.0)
            return updates
        d_numerator += delta
        if lr > 0.0:
            d_hat = float(ctx.value(self.d_coef)) * d_numerator / d_denom
            if d == d0:
                d = max(d, d_hat)
            est["d_max"] = max(est["d_max"], d_hat)
            d = min(est["d_max"], d * _growth(self.growth_rate, ctx.group, "growth_rate"))
        est.update(d=d, d_numerator=d_numerator, k=k + 1)

        denom = torch._foreach_sqrt(state["exp_avg_sq"])
        ctx.ops.add_(denom, d * float(ctx.value(self.eps)))
        out = ctx.quotient(state["exp_avg"] if b1 > 0 else updates, denom)
        weight_decay = float(ctx.value(self.weight_decay)) if ctx.value(self.decouple) else 0.0
        if weight_decay:
            ctx.add_decay(weight_decay)
        # dlr_k / lr, with the new d once more when there is no momentum (the official code's b1 = 0 step)
        ctx.multiply(d_step * bc if b1 > 0 else d_step * bc * d)
        return out


scale_by_prodigy = ScaleByProdigy
