"""Heavy-ball and Nesterov momentum with torch.optim.SGD's conventions.

Polyak, "Some methods of speeding up the convergence of iteration methods", 1964; Nesterov momentum
in the form of Sutskever et al., "On the importance of initialization and momentum in deep
learning", ICML 2013 (as torch.optim.SGD):

    b_1 = g_1,   b_t = momentum * b_{t-1} + (1 - dampening) * g_t
    u_t = g_t + momentum * b_t  (nesterov)   or   u_t = b_t
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import check_hyper, resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean, non_negative

__all__ = ["trace", "Trace"]


@register_transform(
    "trace",
    summary="heavy-ball or Nesterov momentum (torch.optim.SGD conventions: momentum, dampening, nesterov)",
    reference="Sutskever, Martens, Dahl & Hinton, On the importance of initialization and momentum in deep learning, ICML 2013",
)
class Trace(GradientTransform):
    name = "momentum"
    state_kinds = {"momentum_buffer": "moment"}

    def __init__(self, momentum=0.9, dampening=0.0, nesterov=False):
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov

    def validate(self, group):
        momentum = non_negative(self.momentum, group, "momentum")
        dampening = non_negative(self.dampening, group, "dampening")
        if boolean(self.nesterov, group, "nesterov"):
            check_hyper(self.nesterov, group, "nesterov", lambda _: momentum > 0 and dampening == 0,
                        "False unless momentum > 0 and dampening == 0")

    def init(self, params, ctx):
        if float(ctx.value(self.momentum)) == 0:
            return {}
        return {"momentum_buffer": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}

    def update(self, updates, state, params, ctx):
        momentum = float(ctx.value(self.momentum))
        if momentum == 0:
            return updates
        dampening = float(ctx.value(self.dampening))
        buffers = state["momentum_buffer"]
        if ctx.step == 1:  # the first buffer is the gradient itself, undamped
            torch._foreach_copy_(buffers, updates)
        elif ctx.step is not None:
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, updates, alpha=1.0 - dampening)
        else:
            first = [i for i, s in enumerate(ctx.steps) if s == 1]
            later = [i for i, s in enumerate(ctx.steps) if s != 1]
            if first:
                torch._foreach_copy_([buffers[i] for i in first], [updates[i] for i in first])
            if later:
                torch._foreach_mul_([buffers[i] for i in later], momentum)
                torch._foreach_add_([buffers[i] for i in later], [updates[i] for i in later], alpha=1.0 - dampening)
        if ctx.value(self.nesterov):
            return ctx.fresh(torch._foreach_add(updates, buffers, alpha=momentum))
        return list(buffers)  # borrowed: a later in-place transform copies first

    def fused_scalars(self, group, step):
        momentum = float(resolve(self.momentum, group))
        # the first buffer is the gradient itself: b_1 = 0 * b_0 + 1 * g_1
        return {"momentum": momentum, "decay": 0.0 if step == 1 else momentum,
                "gain": 1.0 if step == 1 else 1.0 - float(resolve(self.dampening, group))}

    def fused_tensor(self, update, state, param, scalars, group):
        buffer = state.get("momentum_buffer")
        if buffer is None:  # momentum == 0: no buffer
            return update
        buffer.copy_(buffer * scalars["decay"] + update * scalars["gain"])
        if resolve(self.nesterov, group):
            return update + scalars["momentum"] * buffer
        return buffer


trace = Trace
