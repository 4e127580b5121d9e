"""Subset-norm adaptive step sizes: one second-moment entry shared by each subset of coordinates.

Nguyen et al., "Efficient Adaptive Optimization via Subset-Norm and Subspace-Momentum: Fast,
Memory-Reduced Training with Convergence Guarantees", 2024 (ICML 2025), arXiv:2411.07120;
official code https://github.com/timmytonga/sn-sm.

For a matrix ``G`` (``m x n``; higher-order tensors viewed as ``shape[0] x rest``) the subsets are the
rows when ``m >= n`` and the columns otherwise (the official code's "heuristics" subsets: each subset runs
along the smaller dimension), so the second moment has ``max(m, n)`` entries instead of ``m n``::

    v_t[s] = b2 v_{t-1}[s] + (1 - b2) * sum_{i in s} g_i^2
    u_t    = m_hat_t / (sqrt(v_t[s] / (1 - b2^t)) + eps)       m_t = Adam's first moment (none if b1 = 0)

Vectors keep Adam's elementwise second moment (the saving would be negligible), as the official code does.
"""
from __future__ import annotations

import math

import torch

from gradkit.core.state import FIRST_MOMENT, PER_TENSOR, SECOND_MOMENT
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, positive

__all__ = ["ScaleBySubsetNorm", "scale_by_subset_norm", "subset_shape"]


def subset_shape(shape) -> tuple[int, ...]:
    """Shape of the shared second moment for a parameter of ``shape`` (viewed as a matrix)."""
    if len(shape) < 2:
        return tuple(shape)
    m, n = shape[0], math.prod(shape[1:])
    return (m, 1) if m >= n else (1, n)


@register_transform(
    "scale_by_subset_norm",
    summary="Adam-style step with one second-moment entry per row/column subset (subset-norm)",
    reference="Nguyen et al., Efficient Adaptive Optimization via Subset-Norm and Subspace-Momentum, "
              "arXiv:2411.07120; https://github.com/timmytonga/sn-sm",
)
class ScaleBySubsetNorm(GradientTransform):
    name = "subset_norm"
    kind = PER_TENSOR
    owner_steppable = True  # each tensor's subset sums need that tensor alone (core/redistribute.py)
    state_kinds = {"exp_avg": FIRST_MOMENT, "subset_sq": SECOND_MOMENT}

    def __init__(self, betas=(0.9, 0.999), eps=1e-8):
        self.betas = betas
        self.eps = eps

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        positive(self.eps, group, "eps")

    def init(self, params, ctx):
        b1 = float(ctx.value(self.betas)[0])
        state = {"subset_sq": [torch.zeros(subset_shape(p.shape), dtype=p.dtype, device=p.device) for p in params]}
        if b1 > 0:
            state["exp_avg"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        return state

    @staticmethod
    def denominators(updates, subset_sq, b2: float, eps: float, steps: list[int]) -> list:
        """Update the shared second moments from ``updates``; return ``sqrt(v_hat) + eps`` per tensor."""
        # the subset sums differ in shape per tensor; the reductions are per tensor, the rest is multi-tensor
        sums = []
        for g, v in zip(updates, subset_sq):
            if g.dim() < 2:
                sums.append(g * g)
            else:
                mat = g.reshape(g.shape[0], -1)
                sums.append((mat * mat).sum(dim=1 if v.shape[1] == 1 else 0, keepdim=True))
        torch._foreach_lerp_(subset_sq, sums, 1.0 - b2)
        denom = torch._foreach_sqrt(subset_sq)
        torch._foreach_div_(denom, [math.sqrt(1.0 - b2**s) for s in steps])
        torch._foreach_add_(denom, eps)
        return denom

    @staticmethod
    def divide(numerators, denominators) -> list:
        """``numerator / denominator`` with the subset denominators broadcast over their subsets."""
        views = [n.reshape(n.shape[0], -1) if n.dim() >= 2 else n for n in numerators]
        return [o.reshape(n.shape) for o, n in zip(torch._foreach_div(views, denominators), numerators)]

    def update(self, updates, state, params, ctx):
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        steps = ctx.steps
        denom = self.denominators(updates, state["subset_sq"], b2, float(ctx.value(self.eps)), steps)
        if b1 > 0:
            torch._foreach_lerp_(state["exp_avg"], updates, 1.0 - b1)
            out = self.divide(state["exp_avg"], denom)
            torch._foreach_div_(out, [1.0 - b1**s for s in steps])
        else:
            out = self.divide(updates, denom)
        return ctx.fresh(out)


scale_by_subset_norm = ScaleBySubsetNorm
