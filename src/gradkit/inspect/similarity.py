"""Similarity of two representations of the same examples: SVCCA and linear CKA.

* SVCCA: Maithra Raghu, Justin Gilmer, Jason Yosinski, Jascha Sohl-Dickstein. "SVCCA: Singular Vector
  Canonical Correlation Analysis for Deep Learning Dynamics and Interpretability", NeurIPS 2017,
  arXiv:1706.05806. Official code: https://github.com/google/svcca.
* Linear CKA: Simon Kornblith, Mohammad Norouzi, Honglak Lee, Geoffrey Hinton. "Similarity of Neural
  Network Representations Revisited", ICML 2019, arXiv:1905.00414. Official code:
  https://github.com/google-research/google-research/tree/master/representation_similarity.

Representations are ``(n, p)`` matrices: ``n`` examples (rows, the same in both) by ``p`` neurons. For
a convolutional layer the paper treats every spatial position as a data point: pass
``flatten_positions(activation)``, ``(N, C, H, W) -> (N*H*W, C)``.

SVCCA: centre each neuron; keep the top singular directions of each representation that explain
``keep_variance`` of its variance (the paper keeps 99%); the canonical correlations of the two reduced
subspaces are the singular values of ``U_x^T U_y`` (orthonormal bases of the two column spaces); the
similarity is their mean. It is invariant to rotations and isotropic scaling, and, when no direction is
dropped (``keep_variance=1``), to every invertible linear map. The official code solves CCA with a small
ridge (``epsilon``) on the covariances; the orthonormal-basis form used here is the same quantity without it.

Linear CKA: with centred ``X`` and ``Y``,
``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``; invariant to rotations and isotropic scaling of either,
not to general invertible maps.
"""
from __future__ import annotations

import torch

__all__ = ["svcca", "linear_cka", "flatten_positions", "canonical_correlations"]


def _check_pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    for name, r in (("x", x), ("y", y)):
        if not isinstance(r, torch.Tensor) or r.dim() != 2:
            raise ValueError(f"{name} must be an (n examples, p neurons) tensor, got {getattr(r, 'shape', type(r).__name__)}")
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"x and y must hold the same n >= 2 examples (rows), got {x.shape[0]} and {y.shape[0]}")
    x = x.detach().double()
    y = y.detach().double()
    return x - x.mean(0), y - y.mean(0)


def flatten_positions(activation: torch.Tensor) -> torch.Tensor:
    """``(N, C, *spatial)`` -> ``(N * prod(spatial), C)``: every position a data point; 2-D passes through."""
    if activation.dim() == 2:
        return activation
    if activation.dim() < 2:
        raise ValueError(f"activation must be (N, C, ...), got shape {tuple(activation.shape)}")
    return activation.movedim(1, -1).reshape(-1, activation.shape[1])


def _basis(centred: torch.Tensor, keep_variance: float) -> torch.Tensor:
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    var = s.pow(2)
    total = var.sum()
    if total <= 0:
        raise ValueError("a representation is constant over the examples (no variance to compare)")
    rank = int((s > s[0] * max(centred.shape) * torch.finfo(s.dtype).eps).sum())
    keep = int((torch.cumsum(var, 0) / total < keep_variance - 1e-12).sum()) + 1
    return u[:, :min(keep, rank)]


def canonical_correlations(x: torch.Tensor, y: torch.Tensor, keep_variance: float = 0.99) -> torch.Tensor:
    """The canonical correlations (descending) of the SVD-reduced ``x`` and ``y``."""
    if not 0.0 < float(keep_variance) <= 1.0:
        raise ValueError(f"keep_variance must be in (0, 1], got {keep_variance!r}")
    xc, yc = _check_pair(x, y)
    ux, uy = _basis(xc, keep_variance), _basis(yc, keep_variance)
    return torch.linalg.svdvals(ux.T @ uy).clamp(max=1.0)


def svcca(x: torch.Tensor, y: torch.Tensor, keep_variance: float = 0.99) -> float:
    """Mean canonical correlation of the SVD-reduced representations (1: the same subspace).

    >>> x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    >>> round(svcca(x, 3 * x @ torch.linalg.qr(torch.randn(6, 6))[0]), 6)
    1.0
    """
    return float(canonical_correlations(x, y, keep_variance).mean())


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment in [0, 1] (1: the same representation up to rotation and scale).

    >>> x = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    >>> round(linear_cka(x, -2 * x), 6)
    1.0
    """
    xc, yc = _check_pair(x, y)
    cross = (yc.T @ xc).pow(2).sum()
    norm = torch.linalg.matrix_norm(xc.T @ xc) * torch.linalg.matrix_norm(yc.T @ yc)
    if norm <= 0:
        raise ValueError("a representation is constant over the examples (no variance to compare)")
    return float(cross / norm)
