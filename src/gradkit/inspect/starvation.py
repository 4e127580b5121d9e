"""Gradient starvation: which features dominate what the network has learned, read from the
decomposition of its neural tangent features.

Mohammad Pezeshki, Sekou-Oumar Kaba, Yoshua Bengio, Aaron Courville, Doina Precup, Guillaume Lajoie.
"Gradient Starvation: A Learning Proclivity in Neural Networks", NeurIPS 2021, arXiv:2011.09468.
Official code: https://github.com/mohammadpz/Gradient_Starvation.

The paper linearises the network around its weights, ``y_hat = Phi theta`` with ``Phi`` the ``(n, P)``
matrix of per-example output gradients (the NTK features), and decomposes the label-weighted features
``Y Phi = U S V^T``. Each singular value ``s_j`` is the strength of one feature direction ``V_j``; with
cross-entropy the strong directions are learned first and, once they separate the data, shrink the
gradient left for the weak ones (starvation). The diagnostic returns the strengths, the share of the
strongest, an effective number of features (the participation ratio ``(sum s^2)^2 / sum s^4``) and how
much each example loads on each direction (``U S``).

Rows of ``Phi``: for a model with ``(N, classes)`` outputs, the gradient of the target class's logit
(the paper's binary ``y * f(x)`` generalised to several classes: a departure, the paper treats binary
outputs); for ``(N,)`` outputs, ``y * grad f(x)`` with labels in ``{-1, +1}`` (``{0, 1}`` are mapped).
Spectral Decoupling, the paper's remedy, is :func:`gradkit.losses.spectral_decoupling`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._pergrad import per_example_gradients

__all__ = ["FeatureStrengths", "feature_strengths"]


@dataclass(frozen=True)
class FeatureStrengths:
    """``strengths`` (k,) descending singular values of ``Y Phi``; ``share`` their squares normalised;
    ``dominance`` the share of the strongest; ``effective_features`` the participation ratio (1: one feature
    carries everything, k: all equal); ``loadings`` (n, k) = ``U S``."""

    strengths: torch.Tensor
    share: torch.Tensor
    dominance: float
    effective_features: float
    loadings: torch.Tensor


def _signed_score(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if out.dim() == 2 and out.shape[1] > 1:
        return out.gather(1, y.long().view(-1, 1)).sum()
    sign = torch.where(y > 0, 1.0, -1.0).to(out.dtype)
    return (out.reshape(-1) * sign).sum()


def feature_strengths(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, top: int | None = None,
                      chunk_size: int = 64) -> FeatureStrengths:
    """The decomposition of the label-weighted tangent features of ``model`` on ``(inputs, targets)``.

    Builds the ``(n, P)`` feature matrix, so keep ``n`` small (hundreds) for large models. ``top`` keeps
    that many directions (default: all, ``min(n, P)``). Nothing of the model is written; put models with
    batch norm in eval mode first.
    """
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"top must be None or an integer >= 1, got {top!r}")
    phi = torch.cat(list(per_example_gradients(model, _signed_score, inputs, targets, chunk_size=chunk_size))).double()
    u, s, _ = torch.linalg.svd(phi, full_matrices=False)
    if top is not None:
        u, s = u[:, :top], s[:top]
    sq = s.pow(2)
    total = sq.sum()
    if total <= 0:
        raise ValueError("the model's output does not depend on its parameters at these inputs (all features are zero)")
    share = sq / total
    return FeatureStrengths(s, share, float(share[0]), float(total ** 2 / sq.pow(2).sum()), u * s)
