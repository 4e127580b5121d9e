"""Extreme eigenpairs of a symmetric operator: Lanczos with full reorthogonalisation, or power iteration.

Lanczos (C. Lanczos, "An iteration method for the solution of the eigenvalue problem of linear
differential and integral operators", J. Res. Nat. Bur. Standards 45, 1950) builds an orthonormal
Krylov basis Q and the tridiagonal T = Q^T H Q; the eigenpairs of T (Ritz pairs) approximate the
extreme eigenpairs of H. In floating point the basis loses orthogonality as Ritz values converge,
which creates spurious copies of eigenvalues; here every new vector is orthogonalised against the
whole basis twice ("twice is enough", Giraud et al. 2005), which removes that problem at the cost of
storing the basis (``num_iter`` vectors of the model's size). The basis is a matrix, so the
reorthogonalisation is two matrix-vector products rather than a loop over vectors.

Stopping rule: the Ritz pair (theta, y) has residual ||H y - theta y|| = beta_j |s_j| (the last
component of T's eigenvector times the last off-diagonal), known without another product; the
iteration stops when every wanted pair has residual <= ``tol * |theta|``. The eigenvalue error is
then at most ``tol * |theta|`` and usually far smaller (it is quadratic in the residual).

Warm start: passing the previous step's eigenvectors as ``init`` starts the Krylov space from
them, which is how ``SharpnessTracker`` keeps a top-eigenvalue estimate within a few products.

Reference implementations consulted for the conventions: PyHessian (Yao et al., "PyHessian:
Neural Networks Through the Lens of the Hessian", IEEE BigData 2020,
https://github.com/amirgholami/PyHessian), which uses power iteration with deflation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .hessian import LinearOperator, as_operator

__all__ = ["EigenResult", "top_eigenpairs", "lanczos", "LanczosResult"]

EIGEN_METHODS = ("lanczos", "power")
WHICH = ("LA", "LM")


@dataclass
class EigenResult:
    """``eigenvalues`` (k,) in decreasing order of the requested criterion; ``eigenvectors`` (k, n)
    with orthonormal rows; ``residuals`` ||Hv - lambda v|| per pair; ``num_hvps`` used."""

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    residuals: torch.Tensor
    num_hvps: int
    converged: bool


@dataclass
class LanczosResult:
    """The tridiagonal T (``alphas`` diagonal, ``betas`` off-diagonal) and the basis rows ``basis``."""

    alphas: torch.Tensor
    betas: torch.Tensor
    basis: torch.Tensor
    num_hvps: int

    def tridiagonal(self) -> torch.Tensor:
        m = self.alphas.numel()
        t = torch.diag(self.alphas)
        if m > 1:
            t += torch.diag(self.betas[: m - 1], 1) + torch.diag(self.betas[: m - 1], -1)
        return t


def _orthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    if basis.shape[0] == 0:
        return w
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def _random_unit(op: LinearOperator, basis: torch.Tensor, generator) -> torch.Tensor | None:
    for _ in range(3):
        # agree: every rank of a data-parallel operator continues from the same vector.
        w = op.agree(torch.randn(op.size, generator=generator, dtype=op.dtype, device="cpu").to(op.device))
        w = _orthogonalise(w, basis)
        norm = torch.linalg.vector_norm(w)
        if norm > 1e-3:
            return w / norm
    return None


def _select(values: torch.Tensor, k: int, which: str) -> torch.Tensor:
    key = values if which == "LA" else values.abs()
    return torch.argsort(key, descending=True)[:k]


def lanczos(operator, num_iter: int, *, start: torch.Tensor | None = None, k: int | None = None, which: str = "LA", tol: float | None = None, generator: torch.Generator | None = None) -> LanczosResult:
    """Run up to ``num_iter`` Lanczos steps with full reorthogonalisation.

    With ``k`` and ``tol`` given, stops early once the top-``k`` Ritz pairs (by ``which``) have
    relative residual <= ``tol``. A breakdown (an invariant subspace found) continues from a random
    vector orthogonal to the basis, so T stays exact; its off-diagonal entry there is zero.
    """
    op = as_operator(operator)
    n = op.size
    if not isinstance(num_iter, int) or num_iter < 1:
        raise ValueError(f"num_iter must be a positive integer, got {num_iter!r}")
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH} (largest algebraic / largest magnitude), got {which!r}")
    num_iter = min(num_iter, n)
    dtype, device = op.dtype, op.device
    if start is None:
        q = _random_unit(op, torch.empty(0, n, dtype=dtype, device=device), generator)
    else:
        if start.shape != (n,):
            raise ValueError(f"start must be a flat tensor of shape ({n},), got {tuple(start.shape)}")
        norm = torch.linalg.vector_norm(start)
        if not torch.isfinite(norm) or norm == 0:
            raise ValueError("start must be a finite, non-zero vector")
        q = op.agree((start / norm).to(dtype=dtype, device=device))
    basis = torch.empty(num_iter, n, dtype=dtype, device=device)
    alphas, betas = [], []
    hvps_before = op.num_hvps
    scale = 0.0
    # Below this relative size the new direction is rounding noise: the Krylov space is invariant.
    breakdown = max(1e-10, 100 * torch.finfo(dtype).eps)
    for j in range(num_iter):
        basis[j] = q
        w = op.matvec(q)
        alpha = torch.dot(w, q)
        w = _orthogonalise(w, basis[: j + 1])
        beta = torch.linalg.vector_norm(w)
        alphas.append(float(alpha))
        betas.append(float(beta))
        scale = max(scale, abs(float(alpha)), float(beta))
        if k is not None and tol is not None and j + 1 >= k:
            t = _tridiagonal(alphas, betas)
            theta, s = torch.linalg.eigh(t)
            idx = _select(theta, k, which)
            residual = abs(betas[-1]) * s[-1, idx].abs()
            if bool((residual <= tol * theta[idx].abs().clamp_min(1e-30)).all()):
                break
        if j + 1 == num_iter:
            break
        if float(beta) <= breakdown * max(scale, 1e-30):
            betas[-1] = 0.0
            q = _random_unit(op, basis[: j + 1], generator)
            if q is None:
                break
        else:
            q = w / beta
    m = len(alphas)
    return LanczosResult(torch.tensor(alphas, dtype=torch.float64), torch.tensor(betas, dtype=torch.float64), basis[:m], op.num_hvps - hvps_before)


def _tridiagonal(alphas, betas) -> torch.Tensor:
    a = torch.tensor(alphas, dtype=torch.float64)
    t = torch.diag(a)
    if len(alphas) > 1:
        b = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
        t += torch.diag(b, 1) + torch.diag(b, -1)
    return t


def _start_vector(init, n, dtype, device, generator):
    if init is None:
        return None
    init = torch.as_tensor(init)
    if init.ndim == 1:
        init = init[None]
    if init.ndim != 2 or init.shape[1] != n:
        raise ValueError(f"init must be a vector of shape ({n},) or previous eigenvectors of shape (k, {n}), got {tuple(init.shape)}")
    init = init.to(dtype=dtype, device=device)
    # Equal weights on the previous eigenvectors put every one of them in the Krylov space at once.
    start = (init / torch.linalg.vector_norm(init, dim=1, keepdim=True).clamp_min(1e-30)).sum(0)
    return start


def top_eigenpairs(operator, k: int = 1, *, method: str = "lanczos", which: str | None = None, max_iter: int = 100, tol: float = 1e-3, init: torch.Tensor | None = None, generator: torch.Generator | None = None) -> EigenResult:
    """Top-``k`` eigenvalues and eigenvectors of a symmetric operator (e.g. ``HessianOperator``).

    Args:
        method: ``"lanczos"`` (default; Lanczos with full reorthogonalisation, ``max_iter`` is the
            largest Krylov dimension) or ``"power"`` (power iteration with deflation against the
            eigenvectors already found, as in PyHessian; ``max_iter`` products per eigenvalue).
        which: ``"LA"`` largest algebraic (default for Lanczos: the sharpness of a loss) or
            ``"LM"`` largest magnitude. Power iteration converges to the largest magnitude only,
            so it accepts ``"LM"`` (its default) and raises for ``"LA"``.
        tol: relative residual ``||Hv - lambda v|| / |lambda|`` at which a pair counts as converged
            (Lanczos); relative change of the eigenvalue between iterations (power iteration).
        init: a start vector (n,) or the previous eigenvectors (k', n) to warm-start from.
    """
    op = as_operator(operator)
    n = op.size
    if not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, {n}] (the operator's size), got {k!r}")
    if method not in EIGEN_METHODS:
        raise ValueError(f"method must be one of {EIGEN_METHODS}, got {method!r}")
    if which is None:
        which = "LA" if method == "lanczos" else "LM"
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    start = _start_vector(init, n, op.dtype, op.device, generator)
    if method == "power":
        if which != "LM":
            raise ValueError("which must be 'LM' for method='power' (power iteration finds the largest-magnitude eigenvalues); use method='lanczos' for 'LA'")
        return _power(op, k, max_iter, tol, start, generator)
    before = op.num_hvps
    result = lanczos(op, max(max_iter, k), start=start, k=k, which=which, tol=tol, generator=generator)
    theta, s = torch.linalg.eigh(result.tridiagonal())
    idx = _select(theta, k, which)
    last_beta = float(result.betas[-1])
    residuals = (last_beta * s[-1, idx].abs()).to(torch.float64)
    vectors = s[:, idx].T.to(dtype=result.basis.dtype, device=result.basis.device) @ result.basis
    converged = bool((residuals <= tol * theta[idx].abs().clamp_min(1e-30)).all())
    return EigenResult(theta[idx].clone(), vectors, residuals, op.num_hvps - before, converged)


def _power(op: LinearOperator, k: int, max_iter: int, tol: float, start, generator) -> EigenResult:
    n, dtype, device = op.size, op.dtype, op.device
    before = op.num_hvps
    found = torch.empty(0, n, dtype=dtype, device=device)
    values, residuals, converged = [], [], True
    for i in range(k):
        v = op.agree(start.clone()) if (i == 0 and start is not None) else _random_unit(op, found, generator)
        v = _orthogonalise(v, found)
        v = v / torch.linalg.vector_norm(v)
        value, ok = None, False
        for _ in range(max_iter):
            hv = _orthogonalise(op.matvec(v), found)  # deflation: stay out of the found eigenspace
            new_value = float(torch.dot(hv, v))
            norm = torch.linalg.vector_norm(hv)
            residual = float(torch.linalg.vector_norm(hv - new_value * v))
            if norm == 0:
                value, ok = 0.0, True
                break
            v = hv / norm
            if value is not None and abs(new_value - value) <= tol * max(abs(new_value), 1e-30):
                value, ok = new_value, True
                break
            value = new_value
        converged &= ok
        values.append(value)
        residuals.append(residual)
        found = torch.cat([found, v[None]])
    return EigenResult(torch.tensor(values, dtype=torch.float64), found, torch.tensor(residuals, dtype=torch.float64), op.num_hvps - before, converged)
