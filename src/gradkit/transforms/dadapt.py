"""D-Adaptation (Adam form): Adam whose step size d is a lower bound on the distance to the solution.

Defazio & Mishchenko, "Learning-Rate-Free Learning by D-Adaptation", ICML 2023, arXiv:2301.07733;
official code https://github.com/facebookresearch/dadaptation (package ``dadaptation``, ``DAdaptAdam``).

With d_0 > 0 and lr (1.0 by default; a multiplier of the estimate), per step k::

    dlr_k = d_k * lr * bc_k       bc_k = sqrt(1 - b2^(k+1)) / (1 - b1^(k+1)) if use_bias_correction else 1
    a_k   = dlr_k * sum <g_k, s_{k-1} / (sqrt(v_{k-1}) + eps)>                    (summed over the group)
    m_k   = b1 m_{k-1} + (1 - b1) d_k bc_k g_k        v_k = b2 v_{k-1} + (1 - b2) g_k^2
    s_k   = sqrt(b2) s_{k-1} + (1 - sqrt(b2)) dlr_k g_k
    r_k   = sqrt(b2) r_{k-1} + (1 - sqrt(b2)) a_k
    d_hat = r_k / ((1 - sqrt(b2)) sum ||s_k||_1);    d_{k+1} = max(d_k, min(d_hat, growth_rate d_k))
    x_{k+1} = x_k - lr (m_k / (sqrt(v_k) + eps) + wd d_k bc_k x_k)                (decoupled decay)

Deviations from the official code: there the lr is inside the momentum (``m += (1 - b1) dlr g``) and a
step with lr 0 still moves the params by the old momentum; here ``m`` carries ``d bc`` and the lr
multiplies the whole step (``scale_by_learning_rate``), which is the same for a constant lr and makes a
step with lr 0 a no-op. The estimate is per param group (the official code shares one across groups);
``layer_scale`` is not provided; under FSDP2 the group sums are completed over the mesh
(``shard_aware``). When every gradient is zero the step leaves
the params and the estimate unchanged, as in the official code.
"""
from __future__ import annotations

import math

import torch

from gradkit.core.state import FIRST_MOMENT, PER_TENSOR, SECOND_MOMENT
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, boolean, non_negative, positive
from gradkit.transforms._reduce import dot_sum, l1_sum
from gradkit.transforms.prodigy import _growth

__all__ = ["scale_by_dadapt_adam", "ScaleByDAdaptAdam"]


@register_transform(
    "scale_by_dadapt_adam",
    summary="D-Adaptation: Adam with the step size d estimated as a lower bound on the distance to the solution",
    reference="Defazio & Mishchenko, Learning-Rate-Free Learning by D-Adaptation, ICML 2023, arXiv:2301.07733; "
              "https://github.com/facebookresearch/dadaptation",
)
class ScaleByDAdaptAdam(GradientTransform):
    """D-Adaptation Adam (args as ``dadaptation.DAdaptAdam``); ``d`` is group-level state.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> t = gradkit.chain(gradkit.scale_by_dadapt_adam(lr=1.0, d0=0.01), gradkit.scale_by_learning_rate())
    >>> opt = gradkit.Optimizer([w], t, {"lr": 0.1})
    >>> for _ in range(2):
    ...     w.grad = torch.tensor([0.5, -0.5]); opt.step()
    >>> w.detach()
    tensor([ 0.9926, -1.9926])
    """

    name = "dadapt"
    kind = PER_TENSOR
    shard_aware = True  # its group sums over local shards are completed over the mesh (ctx.shards)
    group_state_keys = ("d", "numerator_weighted", "k")
    state_kinds = {"s": FIRST_MOMENT, "exp_avg": FIRST_MOMENT, "exp_avg_sq": SECOND_MOMENT}

    def spans_params(self, group):
        return True  # its estimate sums over the whole group

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decouple=True, d0=1e-6, growth_rate=math.inf,
                 use_bias_correction=False):
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.decouple = decouple
        self.d0 = d0
        self.growth_rate = growth_rate
        self.use_bias_correction = use_bias_correction

    def validate(self, group):
        non_negative(self.lr, group, "lr")
        check_betas(self.betas, group, "betas")
        positive(self.eps, group, "eps")
        non_negative(self.weight_decay, group, "weight_decay")
        boolean(self.decouple, group, "decouple")
        positive(self.d0, group, "d0")
        _growth(self.growth_rate, group, "growth_rate")
        boolean(self.use_bias_correction, group, "use_bias_correction")

    def init(self, params, ctx):
        return {key: [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
                for key in ("s", "exp_avg", "exp_avg_sq")}

    def update(self, updates, state, params, ctx):
        lr = float(ctx.value(self.lr))
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        eps = float(ctx.value(self.eps))
        sqrt_b2 = b2 ** 0.5
        est = ctx.group_state
        if not est:
            est.update(d=float(ctx.value(self.d0)), numerator_weighted=0.0, k=0)
        d, k = est["d"], est["k"]
        d_step = d
        bc = math.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1)) if ctx.value(self.use_bias_correction) else 1.0
        dlr = d * lr * bc
        s, exp_avg, exp_avg_sq = state["s"], state["exp_avg"], state["exp_avg_sq"]
        if lr > 0.0:
            denom = torch._foreach_sqrt(exp_avg_sq)
            ctx.ops.add_(denom, eps)
            numerator = dot_sum(updates, torch._foreach_div(s, denom), ctx.shards)
            ctx.ops.mul_(exp_avg, b1)
            torch._foreach_add_(exp_avg, updates, alpha=d * bc * (1 - b1))
            ctx.ops.mul_(exp_avg_sq, b2)
            torch._foreach_addcmul_(exp_avg_sq, updates, updates, 1 - b2)
            ctx.ops.mul_(s, sqrt_b2)
            torch._foreach_add_(s, updates, alpha=dlr * (1 - sqrt_b2))
            numerator, sk_l1 = torch.stack([numerator, l1_sum(s, ctx.shards)]).tolist()
            numerator *= dlr
        else:
            numerator, sk_l1 = 0.0, l1_sum(s, ctx.shards).item()
        numerator_weighted = sqrt_b2 * est["numerator_weighted"] + (1 - sqrt_b2) * numerator
        if sk_l1 == 0.0:  # no gradient so far: nothing moves, nothing is estimated
            ctx.multiply(0.0)
            return updates
        if lr > 0.0:
            d_hat = numerator_weighted / ((1 - sqrt_b2) * sk_l1)
            d = max(d, min(d_hat, d * _growth(self.growth_rate, ctx.group, "growth_rate")))
        est.update(d=d, numerator_weighted=numerator_weighted, k=k + 1)

        denom = torch._foreach_sqrt(exp_avg_sq)
        ctx.ops.add_(denom, eps)
        out = ctx.quotient(exp_avg, denom)
        weight_decay = float(ctx.value(self.weight_decay)) if ctx.value(self.decouple) else 0.0
        if weight_decay:
            ctx.add_decay(weight_decay * d_step * bc)
        return out


scale_by_dadapt_adam = ScaleByDAdaptAdam
