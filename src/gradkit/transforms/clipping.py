"""Clipping: by the global norm of all updates of a group, by value, and by each tensor's RMS.

``clip_by_global_norm`` follows torch.nn.utils.clip_grad_norm_ (coefficient max_norm / (norm + 1e-6),
capped at 1) and never synchronises with the device. ``clip_by_block_rms`` scales each tensor whose
root-mean-square exceeds the threshold down to it (optax.clip_by_block_rms).
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import check_hyper, resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import positive

__all__ = ["clip_by_global_norm", "clip_by_value", "clip_by_block_rms", "ClipByGlobalNorm", "ClipByValue", "ClipByBlockRMS", "global_norm"]


def global_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of the concatenation of ``tensors``, as a 0-dim float32 tensor (no host sync)."""
    if not tensors:
        return torch.tensor(0.0)
    norms = torch._foreach_norm(tensors)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


@register_transform("clip_by_global_norm", summary="scale all updates of a group so their joint 2-norm is at most max_norm")
class ClipByGlobalNorm(GradientTransform):
    name = "clip_global"

    def __init__(self, max_norm: float = 1.0):
        self.max_norm = max_norm

    def validate(self, group):
        positive(self.max_norm, group, "max_norm")

    def update(self, updates, state, params, ctx):
        max_norm = float(ctx.value(self.max_norm))
        coef = torch.clamp(max_norm / (global_norm(updates) + 1e-6), max=1.0)
        updates = ctx.writable(updates)
        torch._foreach_mul_(updates, coef.to(updates[0].device))
        return updates

    def fused_scalars(self, group, step):
        return {"max_norm": float(resolve(self.max_norm, group))}

    def fused_update(self, updates, state, params, scalars, group):
        if not updates:
            return updates
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(u).float() for u in updates]))
        coef = torch.clamp(scalars[0]["max_norm"].float() / (total + 1e-6), max=1.0)
        return [u * coef.to(u.dtype) for u in updates]


@register_transform("clip_by_value", summary="clamp every update coordinate to [min_value, max_value]")
class ClipByValue(GradientTransform):
    name = "clip_value"

    def __init__(self, min_value: float = -1.0, max_value: float = 1.0):
        self.min_value = min_value
        self.max_value = max_value

    def validate(self, group):
        lo = check_hyper(self.min_value, group, "min_value", lambda x: math.isfinite(float(x)), "a finite number")
        check_hyper(self.max_value, group, "max_value", lambda x: math.isfinite(float(x)) and float(x) >= float(lo),
                    f"a finite number >= min_value ({lo})")

    def update(self, updates, state, params, ctx):
        updates = ctx.writable(updates)
        torch._foreach_clamp_min_(updates, float(ctx.value(self.min_value)))
        torch._foreach_clamp_max_(updates, float(ctx.value(self.max_value)))
        return updates

    def fused_scalars(self, group, step):
        return {"min_value": float(resolve(self.min_value, group)), "max_value": float(resolve(self.max_value, group))}

    def fused_tensor(self, update, state, param, scalars, group):
        return update.clamp(scalars["min_value"], scalars["max_value"])


@register_transform("clip_by_block_rms", summary="scale each tensor whose RMS exceeds threshold down to it")
class ClipByBlockRMS(GradientTransform):
    name = "clip_rms"

    def __init__(self, threshold: float = 1.0):
        self.threshold = threshold

    def validate(self, group):
        positive(self.threshold, group, "threshold")

    def update(self, updates, state, params, ctx):
        if not updates:
            return updates
        threshold = float(ctx.value(self.threshold))
        norms = torch.stack([n.float() for n in torch._foreach_norm(updates)])
        sqrt_numel = torch.tensor([math.sqrt(max(u.numel(), 1)) for u in updates], device=norms.device)
        coefs = torch.clamp(threshold * sqrt_numel / (norms + 1e-12), max=1.0).unbind()
        updates = ctx.writable(updates)
        torch._foreach_mul_(updates, [c.to(u.device) for c, u in zip(coefs, updates)])
        return updates

    def fused_scalars(self, group, step):
        return {"threshold": float(resolve(self.threshold, group))}

    def fused_tensor(self, update, state, param, scalars, group):
        norm = torch.linalg.vector_norm(update).float()
        coef = torch.clamp(scalars["threshold"].float() * math.sqrt(max(update.numel(), 1)) / (norm + 1e-12), max=1.0)
        return update * coef.to(update.dtype)


clip_by_global_norm = ClipByGlobalNorm
clip_by_value = ClipByValue
clip_by_block_rms = ClipByBlockRMS
