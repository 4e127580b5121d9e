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
from gradkit.core.state import FIRST_MOMENT
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
    """Momentum with torch.optim.SGD's conventions (the first buffer is the gradient itself).

    Args:
        momentum: the buffer's decay (0: no buffer, the input passes through).
        dampening: the gradient enters the buffer times ``1 - dampening``.
        nesterov: return ``g + momentum * b`` instead of ``b``.

    ``b_1 = g_1``, ``b_t = momentum b_{t-1} + (1 - dampening) g_t``. Reference: Sutskever et al., ICML 2013.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.trace(0.9), gradkit.scale_by_learning_rate()), {"lr": 0.1})
    >>> for _ in range(2):
    ...     w.grad = torch.tensor([1.0]); opt.step()
    >>> round(w.item(), 4)  # 1 - 0.1 * (1 + 1.9)
    0.71
    """

    name = "momentum"
    fusable = True
    state_kinds = {"momentum_buffer": FIRST_MOMENT}

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

    def scalars(self, group, step):
        momentum = float(resolve(self.momentum, group))
        # the first buffer is the gradient itself: b_1 = 0 * b_0 + 1 * g_1
        return {"momentum": momentum, "decay": 0.0 if step == 1 else momentum,
                "gain": 1.0 if step == 1 else 1.0 - float(resolve(self.dampening, group))}

    def update(self, updates, state, params, ctx):
        if "momentum_buffer" not in state:  # momentum == 0: no buffer
            return updates
        s, ops, buffers = ctx.scalars(self), ctx.ops, state["momentum_buffer"]
        self.update_buffers(ops, buffers, updates, s)
        if ctx.value(self.nesterov):
            return ctx.fresh(ops.add(updates, buffers, alpha=s["momentum"]))
        return ctx.borrowed(list(buffers))  # a later in-place transform copies first

    @staticmethod
    def update_buffers(ops, buffers, updates, s):
        if isinstance(s["decay"], float) and s["decay"] == 0.0 and s["gain"] == 1.0:
            ops.copy_(buffers, updates)  # the first step (torch.optim clones the gradient)
        else:
            ops.mul_(buffers, s["decay"])
            ops.add_(buffers, updates, alpha=s["gain"])

    def predict(self, state, params, ctx):
        """The buffer (XGrad's SGD-with-momentum prediction); needs momentum > 0 and no Nesterov."""
        if float(ctx.value(self.momentum)) <= 0:
            raise ValueError("weight prediction of SGD uses the momentum buffer: momentum must be > 0, "
                             f"got {ctx.value(self.momentum)!r}")
        if ctx.value(self.nesterov):
            raise ValueError("weight prediction of SGD follows heavy-ball momentum (nesterov=False); got nesterov=True")
        return ctx.borrowed(list(state.get("momentum_buffer", [])))


trace = Trace
