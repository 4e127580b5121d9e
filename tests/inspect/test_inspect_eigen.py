from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradkit.inspect import HessianOperator, MatrixOperator, SharpnessTracker, lanczos, top_eigenpairs

from inspect_helpers import exact_hessian, small_batch, small_mlp


def test_lanczos_top5_match_exact_hessian(mlp_problem):
    model, batch, h, _ = mlp_problem
    exact = torch.linalg.eigvalsh(h).flip(0)[:5]
    op = HessianOperator(model, F.cross_entropy, batch)
    result = top_eigenpairs(op, 5, tol=1e-10, max_iter=op.size, generator=torch.Generator().manual_seed(0))
    assert result.converged
    torch.testing.assert_close(result.eigenvalues, exact, rtol=1e-4, atol=0)
    # Eigenvectors: orthonormal rows and H v = lambda v.
    v = result.eigenvectors
    torch.testing.assert_close(v @ v.T, torch.eye(5, dtype=v.dtype), atol=1e-8, rtol=0)
    torch.testing.assert_close(v @ h, result.eigenvalues[:, None] * v, atol=1e-6, rtol=0)
    assert result.num_hvps == op.num_hvps <= op.size


def test_largest_magnitude_and_power_iteration():
    # A spectrum whose largest-magnitude eigenvalue is negative separates "LA" from "LM".
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=torch.float64))
    values = torch.cat([torch.tensor([-9.0, 5.0, 3.0], dtype=torch.float64), torch.linspace(-1, 1, 37, dtype=torch.float64)])
    a = q @ torch.diag(values) @ q.T
    la = top_eigenpairs(a, 2, tol=1e-10, max_iter=40, generator=g)
    torch.testing.assert_close(la.eigenvalues, torch.tensor([5.0, 3.0], dtype=torch.float64))
    lm = top_eigenpairs(a, 2, which="LM", tol=1e-10, max_iter=40, generator=g)
    torch.testing.assert_close(lm.eigenvalues, torch.tensor([-9.0, 5.0], dtype=torch.float64))
    power = top_eigenpairs(a, 2, method="power", tol=1e-12, max_iter=500, generator=g)
    assert power.converged
    torch.testing.assert_close(power.eigenvalues, torch.tensor([-9.0, 5.0], dtype=torch.float64), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="which must be 'LM' for method='power'"):
        top_eigenpairs(a, 1, method="power", which="LA")


def test_lanczos_reproduces_moments_and_handles_breakdown():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(30, 30, generator=g, dtype=torch.float64)
    a = a + a.T
    start = torch.randn(30, generator=g, dtype=torch.float64)
    start /= start.norm()
    result = lanczos(a, 6, start=start)
    t = result.tridiagonal()
    e1 = torch.zeros(6, dtype=torch.float64)
    e1[0] = 1
    for p in range(12):  # Gauss quadrature with m nodes is exact for degree < 2m
        exact = start @ torch.linalg.matrix_power(a, p) @ start
        torch.testing.assert_close(e1 @ torch.linalg.matrix_power(t, p) @ e1, exact, rtol=1e-9, atol=1e-9)
    # A start vector inside a 2-D invariant subspace: the basis continues past the breakdown.
    _, vecs = torch.linalg.eigh(a)
    res = lanczos(a, 5, start=vecs[:, 0] + vecs[:, 1], generator=g)
    assert res.betas[1] == 0.0 and res.alphas.numel() == 5
    torch.testing.assert_close(res.basis @ res.basis.T, torch.eye(5, dtype=torch.float64), atol=1e-10, rtol=0)


def test_warm_started_sharpness_costs_at_most_20_hvps_and_is_accurate():
    model = small_mlp(seed=2, hidden=16)
    x, y = small_batch(seed=5, n=64)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    tracker = SharpnessTracker(1, tol=1e-3, max_iter=20, generator=torch.Generator().manual_seed(0))
    costs = []
    for step in range(30):
        if step % 5 == 0:
            op = HessianOperator(model, F.cross_entropy, (x, y))
            result = tracker.update(op)
            exact = float(torch.linalg.eigvalsh(exact_hessian(model, F.cross_entropy, x, y)[0])[-1])
            assert result.eigenvalues[0].item() == pytest.approx(exact, rel=1e-4)
            assert result.num_hvps == op.num_hvps
            costs.append(result.num_hvps)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert all(c <= 20 for c in costs[1:]), costs
    assert max(costs[1:]) < costs[0], costs  # warm starts are cheaper than the cold one


def test_bad_arguments_raise():
    a = torch.eye(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="k must be an integer in"):
        top_eigenpairs(a, 5)
    with pytest.raises(ValueError, match="method must be one of"):
        top_eigenpairs(a, 1, method="arnoldi")
    with pytest.raises(ValueError, match="init must be"):
        top_eigenpairs(a, 1, init=torch.ones(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="operator must be"):
        top_eigenpairs([[1.0]], 1)
    with pytest.raises(ValueError, match="matrix must be a square"):
        MatrixOperator(torch.ones(2, 3))
