"""How much of the gradient lies in the top Hessian eigenspace.

Gur-Ari, Roberts & Dyer, "Gradient Descent Happens in a Tiny Subspace", arXiv:1812.04754 (2018;
no official code is listed for it):
after a short initial phase the gradient lies mostly in the span of the top-k Hessian eigenvectors,
k being the number of classes. Their overlap is

    f = ||P_k g||^2 / ||g||^2,   P_k the orthogonal projector onto the top-k eigenspace,

tracked over training. The paper computes it from the exact top eigenvectors (Lanczos); so does
``gradient_subspace_overlap``, with the eigenvectors from ``top_eigenpairs`` (warm-startable).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .eigen import EigenResult, top_eigenpairs
from .hessian import HessianOperator

__all__ = ["subspace_overlap", "gradient_subspace_overlap", "OverlapResult"]


def subspace_overlap(vector: torch.Tensor, basis: torch.Tensor) -> float:
    """``||B^T B v||^2 / ||v||^2`` for a basis with orthonormal rows ``basis`` (k, n)."""
    if vector.ndim != 1:
        raise ValueError(f"vector must be flat (n,), got shape {tuple(vector.shape)}")
    if basis.ndim != 2 or basis.shape[1] != vector.shape[0]:
        raise ValueError(f"basis must have shape (k, {vector.shape[0]}) with orthonormal rows, got {tuple(basis.shape)}")
    norm2 = float(torch.dot(vector, vector))
    if norm2 == 0:
        raise ValueError("vector must be non-zero: the overlap of a zero gradient is undefined")
    coefficients = basis.to(vector.dtype) @ vector
    return float(torch.dot(coefficients, coefficients)) / norm2


@dataclass
class OverlapResult:
    overlap: float
    gradient_norm: float
    eigen: EigenResult


def gradient_subspace_overlap(operator: HessianOperator, k: int = 10, *, gradient: torch.Tensor | None = None, **eigen_kwargs) -> OverlapResult:
    """Overlap of a gradient with the top-``k`` eigenspace of ``operator``'s Hessian.

    ``gradient`` defaults to the exact gradient of the operator's own loss and data; pass a
    minibatch gradient (flattened with ``operator.flatten``) to measure that instead.
    ``eigen_kwargs`` go to ``top_eigenpairs`` (``init=`` previous eigenvectors to warm-start).
    """
    if not isinstance(operator, HessianOperator):
        raise TypeError(f"operator must be a HessianOperator, got {type(operator).__name__}")
    if gradient is None:
        _, gradient = operator.loss_and_gradient()
    eigen = top_eigenpairs(operator, k, **eigen_kwargs)
    return OverlapResult(subspace_overlap(gradient, eigen.eigenvectors), float(torch.linalg.vector_norm(gradient)), eigen)
