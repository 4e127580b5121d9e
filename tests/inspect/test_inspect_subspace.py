from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradkit.inspect import HessianOperator, gradient_subspace_overlap, subspace_overlap


def test_overlap_equals_exact_projection(mlp_problem):
    model, batch, h, g = mlp_problem
    values, vectors = torch.linalg.eigh(h)
    k = 10
    assert values[-k] - values[-k - 1] > 1e-6  # the top-k eigenspace is well defined
    top = vectors[:, -k:]
    exact = float((top.T @ g).pow(2).sum() / g.pow(2).sum())
    op = HessianOperator(model, F.cross_entropy, batch)
    result = gradient_subspace_overlap(op, k, tol=1e-10, max_iter=op.size, generator=torch.Generator().manual_seed(0))
    assert result.overlap == pytest.approx(exact, abs=1e-8)
    assert result.gradient_norm == pytest.approx(float(g.norm()), rel=1e-10)
    # The same with an explicit gradient, and the helper on its own.
    minibatch = torch.randn(op.size, dtype=torch.float64)
    assert subspace_overlap(minibatch, top.T) == pytest.approx(float((top.T @ minibatch).pow(2).sum() / minibatch.pow(2).sum()), rel=1e-12)
    assert 0.0 <= exact <= 1.0


def test_overlap_bad_input():
    with pytest.raises(ValueError, match="vector must be non-zero"):
        subspace_overlap(torch.zeros(3), torch.eye(3)[:1])
    with pytest.raises(ValueError, match="basis must have shape"):
        subspace_overlap(torch.ones(3), torch.eye(4)[:1])
