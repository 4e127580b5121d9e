"""MARS: a variance-reduced gradient, to be fed to any preconditioned optimizer (Adam, Lion, Muon).

Yuan, Liu, Wu, Zhou & Gu, "MARS: Unleashing the Power of Variance Reduction for Training Large Models",
arXiv:2411.10438; official code https://github.com/AGI-Arena/MARS.

The approximate (MARS-approx) form of Algorithm 1, with the gradient of the previous step standing in
for the gradient at the previous weights on the current batch::

    c_t = g_t + gamma * b1 / (1 - b1) * (g_t - g_{t-1})        (g_0 = 0)
    c_t <- c_t / ||c_t||  if ||c_t|| > 1                        (per tensor)

``c_t`` then replaces the gradient in the optimizer that follows (``scale_by_adam`` for MARS-AdamW,
``sign_momentum`` for MARS-Lion). As in the official code the previous gradient starts at zero, so the
first step uses ``(1 + gamma b1 / (1 - b1)) g_1`` (clipped). With ``optimize_1d=False`` (the official
default) tensors with fewer than two dimensions pass through unchanged and keep no state; the official
code then also gives them their own lr, betas and decay, which here are a second param group.
"""
from __future__ import annotations

import torch

from gradkit.core.state import GRADIENT, PER_TENSOR
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, boolean, non_negative

__all__ = ["mars_correction", "MarsCorrection"]


@register_transform(
    "mars_correction",
    summary="MARS: variance-reduced gradient g + gamma b1/(1-b1) (g - g_prev), clipped to norm 1",
    reference="Yuan et al., MARS: Unleashing the Power of Variance Reduction for Training Large Models, "
              "arXiv:2411.10438; https://github.com/AGI-Arena/MARS",
)
class MarsCorrection(GradientTransform):
    """``betas``: the b1 of the correction is the first entry (the momentum of the optimizer it feeds).

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.ones(2, 2))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.mars_correction(), gradkit.scale(-1.0)))
    >>> w.grad = torch.full((2, 2), 0.1); opt.step(); w.detach()  # (1 + 0.025 * 19) g, clipped to norm 1
    tensor([[0.8525, 0.8525],
            [0.8525, 0.8525]])
    """

    name = "mars"
    kind = PER_TENSOR
    owner_steppable = True  # the clipping norm is over one tensor: sharded params step on owner ranks (core/redistribute.py)
    state_kinds = {"last_grad": GRADIENT}

    def __init__(self, gamma=0.025, betas=(0.95, 0.99), optimize_1d=False):
        self.gamma = gamma
        self.betas = betas
        self.optimize_1d = optimize_1d

    def validate(self, group):
        non_negative(self.gamma, group, "gamma")
        check_betas(self.betas, group, "betas")
        boolean(self.optimize_1d, group, "optimize_1d")

    def _corrected(self, params, ctx) -> list[int]:
        every = ctx.value(self.optimize_1d)
        return [i for i, p in enumerate(params) if every or p.dim() >= 2]

    def init(self, params, ctx):
        chosen = set(self._corrected(params, ctx))
        return {"last_grad": [torch.zeros_like(p, memory_format=torch.preserve_format) if i in chosen else None
                              for i, p in enumerate(params)]}

    def update(self, updates, state, params, ctx):
        chosen = self._corrected(params, ctx)
        if not chosen:
            return updates
        gamma = float(ctx.value(self.gamma))
        b1 = float(ctx.value(self.betas)[0])
        grads = [updates[i] for i in chosen]
        last = [state["last_grad"][i] for i in chosen]
        corrected = torch._foreach_sub(grads, last)
        ctx.ops.mul_(corrected, gamma * (b1 / (1.0 - b1)))
        torch._foreach_add_(corrected, grads)
        norms = torch._foreach_norm(corrected)
        torch._foreach_clamp_min_(norms, 1.0)  # divide only where the norm exceeds 1
        torch._foreach_div_(corrected, norms)
        torch._foreach_copy_(last, grads)
        out = list(updates)
        for j, i in enumerate(chosen):
            out[i] = corrected[j]
        if len(chosen) == len(updates):
            return ctx.fresh(out)
        return out  # mixed: some entries are still the (borrowed) input


mars_correction = MarsCorrection
