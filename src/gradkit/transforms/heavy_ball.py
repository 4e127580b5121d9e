"""Heavy-ball momentum whose buffer starts at zero (no special first step).

Polyak, "Some methods of speeding up the convergence of iteration methods", 1964. This is the
convention of the official SGDP code (Heo et al., ICLR 2021, https://github.com/clovaai/AdamP)::

    b_0 = 0,   b_t = momentum * b_{t-1} + (1 - dampening) * g_t
    u_t = g_t + momentum * b_t  (nesterov)   or   u_t = b_t

``trace`` (torch.optim.SGD) instead sets ``b_1 = g_1``; the two agree whenever ``dampening == 0``.
The buffer exists even for ``momentum == 0`` (then it holds ``(1 - dampening) g_t``), as in SGDP.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import resolve
from gradkit.registry import register_transform
from gradkit.transforms.momentum import Trace

__all__ = ["heavy_ball", "HeavyBall"]


@register_transform(
    "heavy_ball",
    summary="heavy-ball/Nesterov momentum with a zero-initialised, damped buffer (SGDP's convention)",
    reference="Polyak, Some methods of speeding up the convergence of iteration methods, 1964; "
              "as in https://github.com/clovaai/AdamP (SGDP)",
)
class HeavyBall(Trace):
    """Momentum with a zero-initialised, damped buffer (SGDP's convention); arguments as
    :class:`~gradkit.transforms.Trace`.

    ``b_t = momentum b_{t-1} + (1 - dampening) g_t`` from ``b_0 = 0``. Reference: Polyak, 1964; as in
    https://github.com/clovaai/AdamP (SGDP).

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.heavy_ball(0.9, dampening=0.5),
    ...                                            gradkit.scale_by_learning_rate()), {"lr": 0.1})
    >>> w.grad = torch.tensor([1.0]); opt.step(); round(w.item(), 4)
    0.95
    """

    name = "momentum"

    def init(self, params, ctx):
        return {"momentum_buffer": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}

    def scalars(self, group, step):
        momentum = float(resolve(self.momentum, group))
        return {"momentum": momentum, "decay": momentum, "gain": 1.0 - float(resolve(self.dampening, group))}

    @staticmethod
    def update_buffers(ops, buffers, updates, s):
        ops.mul_(buffers, s["decay"])
        ops.add_(buffers, updates, alpha=s["gain"])


heavy_ball = HeavyBall
