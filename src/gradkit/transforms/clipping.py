"""Clipping: by the global norm of all updates of a group, by value, and by each tensor's RMS.

``clip_by_global_norm`` follows torch.nn.utils.clip_grad_norm_ (coefficient max_norm / (norm + 1e-6),
capped at 1) and never synchronises with the device. ``clip_by_block_rms`` scales each tensor whose
root-mean-square exceeds the threshold down to it (optax.clip_by_block_rms).
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import check_hyper, resolve
from gradkit.core.ops import FOREACH, at
from gradkit.core.state import PER_TENSOR
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import positive

__all__ = ["clip_by_global_norm", "clip_by_value", "clip_by_block_rms", "ClipByGlobalNorm", "ClipByValue", "ClipByBlockRMS", "global_norm"]


def global_norm(tensors: list[torch.Tensor], ops=FOREACH, shards=None) -> torch.Tensor:
    """The 2-norm of the concatenation of ``tensors``, as a 0-dim float32 tensor (no host sync).

    ``shards`` (:class:`~gradkit.core.sharding.Shards`): the tensors are local shards and each one's
    squared norm is summed over the mesh first (one all-reduce).

    >>> global_norm([torch.tensor([3.0]), torch.tensor([4.0])])
    tensor(5.)
    """
    if not tensors:
        return torch.tensor(0.0)
    norms = torch.stack([n.float() for n in ops.norms(tensors)])
    if shards is not None:
        return shards.sum(norms.square()).sum().sqrt()
    return torch.linalg.vector_norm(norms)


def tensor_norms(tensors: list[torch.Tensor], ops=FOREACH, shards=None) -> torch.Tensor:
    """The 2-norm of each tensor as one float32 vector; with ``shards``, of each whole tensor (one all-reduce)."""
    norms = torch.stack([n.float() for n in ops.norms(tensors)])
    return norms if shards is None else shards.sum(norms.square()).sqrt()


@register_transform("clip_by_global_norm", summary="scale all updates of a group so their joint 2-norm is at most max_norm")
class ClipByGlobalNorm(GradientTransform):
    """Scale the group's updates so that their joint 2-norm is at most ``max_norm``.

    ``u <- u * min(1, max_norm / (||u|| + 1e-6))``, as torch.nn.utils.clip_grad_norm_ (no host sync).
    Reference: Pascanu, Mikolov & Bengio, ICML 2013.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.zeros(2))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.clip_by_global_norm(1.0), gradkit.scale(-1.0)))
    >>> w.grad = torch.tensor([3.0, 4.0]); opt.step(); w.detach()
    tensor([-0.6000, -0.8000])
    """

    name = "clip_global"
    fusable = True
    kind = PER_TENSOR
    shard_aware = True  # norms of local shards are completed over the mesh (ctx.shards)

    def spans_params(self, group):
        return True  # the norm of the whole group

    def __init__(self, max_norm: float = 1.0):
        self.max_norm = max_norm

    def validate(self, group):
        positive(self.max_norm, group, "max_norm")

    def scalars(self, group, step):
        return {"max_norm": float(resolve(self.max_norm, group))}

    def update(self, updates, state, params, ctx):
        if not updates:
            return updates
        max_norm = at(ctx.scalars(self)["max_norm"], 0)  # one value per group
        coef = torch.clamp(max_norm / (global_norm(updates, ctx.ops, ctx.shards) + 1e-6), max=1.0)
        updates = ctx.writable(updates)
        ctx.ops.mul_(updates, coef.to(updates[0].device))
        return updates


@register_transform("clip_by_value", summary="clamp every update coordinate to [min_value, max_value]")
class ClipByValue(GradientTransform):
    """Clamp every coordinate of the update to ``[min_value, max_value]``.

    ``u <- clamp(u, min_value, max_value)``. Reference: optax.clip.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.zeros(2))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.clip_by_value(-1.0, 1.0), gradkit.scale(-1.0)))
    >>> w.grad = torch.tensor([3.0, -0.5]); opt.step(); w.detach()
    tensor([-1.0000,  0.5000])
    """

    name = "clip_value"
    fusable = True

    def __init__(self, min_value: float = -1.0, max_value: float = 1.0):
        self.min_value = min_value
        self.max_value = max_value

    def validate(self, group):
        lo = check_hyper(self.min_value, group, "min_value", lambda x: math.isfinite(float(x)), "a finite number")
        check_hyper(self.max_value, group, "max_value", lambda x: math.isfinite(float(x)) and float(x) >= float(lo),
                    f"a finite number >= min_value ({lo})")

    def scalars(self, group, step):
        return {"min_value": float(resolve(self.min_value, group)), "max_value": float(resolve(self.max_value, group))}

    def update(self, updates, state, params, ctx):
        s = ctx.scalars(self)
        updates = ctx.writable(updates)
        ctx.ops.clamp_min_(updates, s["min_value"])
        ctx.ops.clamp_max_(updates, s["max_value"])
        return updates


@register_transform("clip_by_block_rms", summary="scale each tensor whose RMS exceeds threshold down to it")
class ClipByBlockRMS(GradientTransform):
    """Scale each tensor whose root-mean-square exceeds ``threshold`` down to it.

    ``u_i <- u_i * min(1, threshold * sqrt(numel_i) / (||u_i|| + 1e-12))``. Reference: optax.clip_by_block_rms.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.zeros(4))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.clip_by_block_rms(0.5), gradkit.scale(-1.0)))
    >>> w.grad = torch.full((4,), 2.0); opt.step(); w.detach()
    tensor([-0.5000, -0.5000, -0.5000, -0.5000])
    """

    name = "clip_rms"
    fusable = True
    kind = PER_TENSOR
    shard_aware = True  # norms of local shards are completed over the mesh (ctx.shards)

    def __init__(self, threshold: float = 1.0):
        self.threshold = threshold

    def validate(self, group):
        positive(self.threshold, group, "threshold")

    def scalars(self, group, step):
        return {"threshold": float(resolve(self.threshold, group))}

    def update(self, updates, state, params, ctx):
        if not updates:
            return updates
        threshold = at(ctx.scalars(self)["threshold"], 0)  # one value per group
        norms = tensor_norms(updates, ctx.ops, ctx.shards)
        numels = [u.numel() for u in updates] if ctx.shards is None else ctx.shards.numel()
        sqrt_numel = torch.tensor([math.sqrt(max(n, 1)) for n in numels], device=norms.device)
        coefs = torch.clamp(threshold * sqrt_numel / (norms + 1e-12), max=1.0).unbind()
        updates = ctx.writable(updates)
        ctx.ops.mul_(updates, [c.to(u.device) for c, u in zip(coefs, updates)])
        return updates


clip_by_global_norm = ClipByGlobalNorm
clip_by_value = ClipByValue
clip_by_block_rms = ClipByBlockRMS
