"""Sharpness (top Hessian eigenvalue) over training, against the stability threshold 2 / lr.

Cohen, Kaur, Li, Kolter & Talwalkar, "Gradient Descent on Neural Networks Typically Occurs at the
Edge of Stability", ICLR 2021, arXiv:2103.00065, https://github.com/locuslab/edge-of-stability:
under full-batch gradient descent with step size eta the sharpness rises until it reaches 2 / eta
and then hovers there. For heavy-ball momentum beta the threshold is (2 + 2 beta) / eta (their
Appendix); ``stability_threshold`` gives either.

``SharpnessTracker`` keeps the previous eigenvectors and warm-starts Lanczos from them, so an
estimate every N steps usually costs a handful of Hessian-vector products (``num_hvps`` counts
them) instead of the 20-100 a cold start needs. This warm start is the only departure from the
paper, which runs Lanczos from scratch each time.
"""
from __future__ import annotations

import torch

from .eigen import EigenResult, top_eigenpairs

__all__ = ["SharpnessTracker", "stability_threshold"]


def stability_threshold(lr: float, momentum: float = 0.0) -> float:
    """2 / lr for gradient descent, (2 + 2 momentum) / lr for heavy-ball momentum."""
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    return (2.0 + 2.0 * momentum) / lr


class SharpnessTracker:
    """Top-``k`` eigenpairs of successive Hessians, each search warm-started from the last.

    Args:
        k: eigenpairs to track (1 for sharpness; the number of classes for the Gur-Ari subspace).
        tol: relative residual at which Lanczos stops (see ``top_eigenpairs``).
        max_iter: Krylov dimension cap for warm-started calls.
        cold_max_iter: the cap for the first (cold) call.
    """

    def __init__(self, k: int = 1, *, tol: float = 1e-3, max_iter: int = 20, cold_max_iter: int = 100, generator: torch.Generator | None = None):
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        for name, value in (("max_iter", max_iter), ("cold_max_iter", cold_max_iter)):
            if not isinstance(value, int) or value < k:
                raise ValueError(f"{name} must be an integer >= k ({k}), got {value!r}")
        if not tol > 0:
            raise ValueError(f"tol must be > 0, got {tol!r}")
        self.k, self.tol, self.max_iter, self.cold_max_iter, self.generator = k, tol, max_iter, cold_max_iter, generator
        self.eigenvectors: torch.Tensor | None = None
        self.last: EigenResult | None = None

    def update(self, operator) -> EigenResult:
        warm = self.eigenvectors is not None and self.eigenvectors.shape[1] == operator.size
        result = top_eigenpairs(operator, self.k, tol=self.tol, max_iter=self.max_iter if warm else self.cold_max_iter, init=self.eigenvectors if warm else None, generator=self.generator)
        self.eigenvectors = result.eigenvectors
        self.last = result
        return result

    @property
    def sharpness(self) -> float:
        if self.last is None:
            raise RuntimeError("no estimate yet: call update(operator) first")
        return float(self.last.eigenvalues[0])
