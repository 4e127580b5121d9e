"""Group-wide scalar reductions for the step-size estimators (one host sync per call).

With ``shards`` (:class:`~gradkit.core.sharding.Shards`, on a step over the local shards of sharded params)
each tensor's partial sum is completed over the mesh (one all-reduce) before the sum over tensors.
"""
from __future__ import annotations

import torch
from torch import Tensor


def dot_sum(a: list[Tensor], b: list[Tensor], shards=None) -> Tensor:
    """sum over tensors of <a_i, b_i>, as a 0-dim float64 tensor (on the tensors' device)."""
    products = torch._foreach_mul(a, b)
    if shards is not None:
        return shards.sum(torch.stack([x.sum(dtype=torch.float64) for x in products])).sum()
    return torch.cat([x.reshape(-1) for x in products]).sum(dtype=torch.float64)


def l1_sum(tensors: list[Tensor], shards=None) -> Tensor:
    """sum over tensors of ||t_i||_1 as a 0-dim float64 tensor (accumulated in float64, so that sums over
    different partitions of the same values agree to float64 rounding)."""
    norms = torch.stack(torch._foreach_norm(tensors, ord=1, dtype=torch.float64))
    return (norms if shards is None else shards.sum(norms)).sum()
