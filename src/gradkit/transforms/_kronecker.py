"""Kronecker-factored statistics of SOAP: one factor per tensor dimension.

For a gradient ``G`` with dims ``d_0, ..., d_{k-1}`` the factor of dim ``i`` is the ``d_i x d_i`` matrix
``G_(i) G_(i)^T`` (``G`` contracted with itself over every other dim). Dims larger than
``max_dim`` get no factor (the identity). State keys are ``"<prefix><i>"`` per dim.
"""
from __future__ import annotations

from itertools import chain as iter_chain

import torch
from torch import Tensor


def factor_dims(shape, max_dim: int, precondition_1d: bool = True) -> list[int]:
    """The dims of a tensor of ``shape`` that get a factor."""
    if len(shape) == 0 or (len(shape) == 1 and not precondition_1d):
        return []
    return [i for i, d in enumerate(shape) if d <= max_dim]


def gram(grad: Tensor, dim: int) -> Tensor:
    """``G_(dim) G_(dim)^T``: contraction of ``grad`` with itself over every other dim."""
    others = [*iter_chain(range(dim), range(dim + 1, grad.dim()))]
    return torch.tensordot(grad, grad, dims=[others, others])


def contract(x: Tensor, matrices: list[Tensor | None], transpose: bool = False) -> Tensor:
    """Multiply every dim ``i`` of ``x`` by ``matrices[i]`` (``M^T x`` along it; ``M x`` when
    ``transpose``); ``None`` leaves a dim as it is. Each step contracts the leading dim and appends the
    result at the end, so after all dims the order is restored."""
    for m in matrices:
        if m is None:
            x = x.permute([*range(1, x.dim()), 0])
        else:
            x = torch.tensordot(x, m, dims=[[0], [1 if transpose else 0]])
    return x
