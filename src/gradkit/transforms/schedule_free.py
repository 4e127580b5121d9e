"""Schedule-Free: averaging that replaces the learning-rate schedule, around any base direction.

Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less Scheduled", NeurIPS 2024,
arXiv:2405.15682; official code https://github.com/facebookresearch/schedule_free (package ``schedulefree``).

Three sequences: ``z`` (the base optimizer's iterate), ``x`` (a weighted average of the ``z``, the
point to evaluate) and ``y`` (where gradients are taken, held in the params during training)::

    u_t     = inner(grad f(y_t))                  (SGD: g + wd y;  AdamW: g / (sqrt(v_hat) + eps) + wd y)
    lr_t    = lr * min(1, t / warmup_steps);      lr_max = max_{s<=t} lr_s
    c_{t+1} = w_t / sum_{s<=t} w_s,               w_t = t^r * lr_max^weight_lr_power
    z_{t+1} = z_t - lr_t u_t
    x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}
    y_{t+1} = (1 - beta) z_{t+1} + beta x_{t+1}

With ``x`` implicit (``x = (y - (1 - beta) z) / beta``) the params move by
``y_{t+1} - y_t = c (z_t - y_t) + lr_t (beta (1 - c) - 1) u_t``, which is what this transform returns;
it keeps ``z`` (state ``z``) and the group's ``k``, ``weight_sum`` and ``lr_max``. It ends a chain: the
learning rate is applied here (do not follow it with ``scale_by_learning_rate``). The params hold ``y``;
:class:`gradkit.optim.ScheduleFree`'s ``eval()`` moves them to ``x`` and ``train()`` back.

``momentum`` may be a pair (Adam-style ``betas``), of which the first entry is ``beta``. Deviation:
a step whose lr is 0 leaves the params and ``z`` where they are (the official code still averages
towards ``z`` with the weight of ``lr_max``); it counts as a step of the warm-up.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import check_hyper
from gradkit.core.state import ELEMENTWISE, ITERATE, widest_kind
from gradkit.core.transform import GradientTransform, as_inner, init_inner, update_inner
from gradkit.registry import register_transform
from gradkit.transforms._checks import non_negative

__all__ = ["schedule_free", "ScheduleFreeTransform", "first_entry"]


def first_entry(value):
    """``value[0]`` for a pair, ``value`` for a number."""
    return value[0] if isinstance(value, (tuple, list)) else value


def momentum_of(value, group) -> float:
    def ok(x):
        x = first_entry(x)
        return isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < float(x) <= 1

    return float(first_entry(check_hyper(value, group, "momentum", ok, "in (0, 1] (or a pair whose first entry is)")))


def _count(value, group, name):
    return int(check_hyper(value, group, name, lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 0,
                           "an int >= 0"))


@register_transform(
    "schedule_free",
    summary="Schedule-Free averaging around any base direction (x/y/z sequences; ends a chain, applies the lr)",
    reference="Defazio et al., The Road Less Scheduled, NeurIPS 2024, arXiv:2405.15682; "
              "https://github.com/facebookresearch/schedule_free",
)
class ScheduleFreeTransform(GradientTransform):
    """Schedule-Free around ``inner`` (its state under ``inner.``, then ``z``); applies ``lr`` itself.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.schedule_free(gradkit.scale_by_rms(), lr=0.1), {"lr": 0.1})
    >>> w.grad = torch.tensor([0.5, -0.5]); opt.step(); sorted(opt.state[w])
    ['schedule_free.inner.rms.exp_avg_sq', 'schedule_free.z', 'step']
    """

    name = "schedule_free"
    kind = ELEMENTWISE  # its own arithmetic; an instance takes the widest of its inner transforms'
    group_state_keys = ("k", "weight_sum", "lr_max")
    state_kinds = {"z": ITERATE}
    applies_lr = True

    def __init__(self, inner: GradientTransform, lr, momentum=0.9, warmup_steps=0, r=0.0, weight_lr_power=2.0):
        self.inner = as_inner(inner)
        self.kind = widest_kind(ELEMENTWISE, *(t.kind for t in self.inner.transforms))
        self.lr = lr
        self.momentum = momentum
        self.warmup_steps = warmup_steps
        self.r = r
        self.weight_lr_power = weight_lr_power

    def validate(self, group):
        self.inner.validate(group)
        non_negative(self.lr, group, "lr")
        momentum_of(self.momentum, group)
        _count(self.warmup_steps, group, "warmup_steps")
        non_negative(self.r, group, "r")
        non_negative(self.weight_lr_power, group, "weight_lr_power")

    def children(self):
        return {"inner": self.inner}

    def init(self, params, ctx):
        state = init_inner("inner", self.inner, params, ctx)
        state["z"] = [p.detach().clone(memory_format=torch.preserve_format) for p in params]
        return state

    def scalars(self, group, step):
        return {"inner": self.inner.scalars(group, step)}

    def update(self, updates, state, params, ctx):
        z = state["z"]
        updates = update_inner("inner", self.inner, updates, state, params, ctx)
        updates = ctx.materialize(updates, params)

        group = ctx.group
        sched = ctx.group_state
        if not sched:
            sched.update(k=0, weight_sum=0.0, lr_max=-1.0)
        k = sched["k"]
        warmup = _count(self.warmup_steps, group, "warmup_steps")
        lr = float(ctx.value(self.lr)) * ((k + 1) / warmup if k < warmup else 1.0)
        sched["k"] = k + 1
        if lr == 0.0:
            ctx.multiply(0.0)
            return updates
        sched["lr_max"] = lr_max = max(lr, sched["lr_max"])
        weight = (k + 1) ** float(ctx.value(self.r)) * lr_max ** float(ctx.value(self.weight_lr_power))
        sched["weight_sum"] += weight
        c = weight / sched["weight_sum"] if sched["weight_sum"] else 0.0
        beta = momentum_of(self.momentum, group)

        step = torch._foreach_sub(z, params)
        torch._foreach_mul_(step, c)
        torch._foreach_add_(step, updates, alpha=lr * (beta * (1.0 - c) - 1.0))
        torch._foreach_sub_(z, updates, alpha=lr)
        return ctx.fresh(step)

    def __repr__(self):
        return (f"ScheduleFreeTransform(inner={self.inner!r}, lr={self.lr!r}, momentum={self.momentum!r}, "
                f"warmup_steps={self.warmup_steps!r}, r={self.r!r}, weight_lr_power={self.weight_lr_power!r})")


schedule_free = ScheduleFreeTransform
