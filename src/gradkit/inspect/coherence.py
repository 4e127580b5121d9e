"""Gradient coherence: how much the per-example gradients of a sample agree.

Satrajit Chatterjee, Piotr Zielinski. "On the Generalization Mystery in Deep Learning", arXiv:2203.10036
(2022); the metric comes from Zielinski, Krishnan, Chatterjee, "Coherent Gradients", ICLR 2020,
arXiv:2002.10657. No official code was released for the metric; this follows the paper's definition.

For per-example gradients ``g_1 .. g_m`` (of the loss, over all parameters)::

    alpha = E_{i,j}[g_i . g_j] / E_i[g_i . g_i] = ||sum_i g_i||^2 / (m sum_i ||g_i||^2)

with ``i, j`` drawn independently (``i = j`` included). ``alpha`` lies in ``[0, 1]``: 1 when every
example has the same gradient, ``1/m`` when they are pairwise orthogonal with equal norms. The paper's
*m-coherence* is ``m * alpha``: about how many examples each example's step helps (``m`` when all agree,
1 when orthogonal). Both are returned. The gradients are computed with ``torch.func.vmap`` in chunks,
so only the running sum of gradients and of squared norms is kept, never the ``(m, P)`` matrix.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._pergrad import per_example_gradients

__all__ = ["CoherenceResult", "coherence", "coherence_from_gradients"]


@dataclass(frozen=True)
class CoherenceResult:
    """``alpha`` in [0, 1], ``m_coherence = m * alpha`` in [0, m], the sample size ``m``, the squared norm
    of the mean gradient and the mean squared norm of the per-example gradients (alpha is their ratio)."""

    alpha: float
    m_coherence: float
    m: int
    mean_gradient_sq_norm: float
    mean_sq_norm: float


def _result(total: torch.Tensor, sq_norms: torch.Tensor, m: int) -> CoherenceResult:
    mean_sq = float(sq_norms) / m
    mean_grad_sq = float(total.pow(2).sum()) / (m * m)
    alpha = mean_grad_sq / mean_sq if mean_sq > 0 else float("nan")
    return CoherenceResult(alpha, m * alpha, m, mean_grad_sq, mean_sq)


def coherence_from_gradients(gradients: torch.Tensor) -> CoherenceResult:
    """Coherence of the rows of an ``(m, P)`` matrix of per-example gradients.

    >>> coherence_from_gradients(torch.eye(4)).alpha
    0.25
    >>> coherence_from_gradients(torch.ones(4, 3)).m_coherence
    4.0
    """
    if not isinstance(gradients, torch.Tensor) or gradients.dim() != 2 or gradients.shape[0] < 1:
        raise ValueError(f"gradients must be an (m, P) tensor with m >= 1, got {getattr(gradients, 'shape', type(gradients).__name__)}")
    g = gradients.detach().double()
    return _result(g.sum(0), g.pow(2).sum(), g.shape[0])


def coherence(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    *,
    chunk_size: int = 64,
) -> CoherenceResult:
    """Coherence of the per-example loss gradients of ``model`` on ``(inputs, targets)``.

    Nothing of the model is written. Batch norm in training mode cannot see a batch of one inside
    ``vmap``: call ``model.eval()`` first for such models.
    """
    total, sq_norms = None, 0.0
    for block in per_example_gradients(model, loss_fn, inputs, targets, chunk_size=chunk_size):
        block = block.double()
        total = block.sum(0) if total is None else total + block.sum(0)
        sq_norms = sq_norms + block.pow(2).sum()
    return _result(total, sq_norms, inputs.shape[0])
