"""Group-wide scalar reductions for the step-size estimators (one host sync per call)."""
from __future__ import annotations

import torch
from torch import Tensor


def dot_sum(a: list[Tensor], b: list[Tensor]) -> Tensor:
    """sum over tensors of <a_i, b_i>, as a 0-dim float64 tensor (on the tensors' device)."""
    products = torch._foreach_mul(a, b)
    return torch.cat([x.reshape(-1) for x in products]).sum(dtype=torch.float64)


def l1_sum(tensors: list[Tensor]) -> Tensor:
    """sum over tensors of ||t_i||_1 as a 0-dim float64 tensor."""
    return torch.stack([n.to(torch.float64) for n in torch._foreach_norm(tensors, ord=1)]).sum()
