"""Batched solver for the small quadratic program behind projections onto a dual cone.

For a Gramian ``G = J J^T`` (``m x m``) and weight vectors ``u`` (rows of ``U``), solve::

    min_v  v^T G v   subject to  v >= u      (elementwise)

Proposition 1 of Quinton & Rey (arXiv:2406.16232): ``J^T v`` is then the projection of ``J^T u``
onto the dual cone of the rows of ``J``. Writing ``v = u + x`` turns this into a non-negative
least-squares problem in ``x`` (``min ||J^T x + J^T u||^2, x >= 0``), solved here with the
Lawson-Hanson active-set method, for all rows of ``U`` at once: each problem keeps its own
passive set as a boolean mask, and every inner step is one batched ``m x m`` linear solve.
The method terminates in finitely many steps and is exact up to round-off, which a
projected-gradient iteration is not on ill-conditioned Gramians.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["project_weights"]


def _masked_solve(q: Tensor, c: Tensor, passive: Tensor) -> Tensor:
    # Solve Q_PP s_P = -c_P per problem, with s = 0 off the passive set, as one batched system.
    both = passive.unsqueeze(2) & passive.unsqueeze(1)
    a = torch.where(both, q.unsqueeze(0), torch.zeros((), dtype=q.dtype, device=q.device))
    a = a + torch.diag_embed((~passive).to(q.dtype))
    rhs = torch.where(passive, -c, torch.zeros((), dtype=q.dtype, device=q.device))
    s, info = torch.linalg.solve_ex(a, rhs.unsqueeze(2))
    if bool((info != 0).any()):
        raise RuntimeError(
            "the Gramian restricted to the active rows is singular; use a positive reg_eps "
            "(rows of the Jacobian are linearly dependent)"
        )
    return s.squeeze(2)


def _warm_start(q: Tensor, c: Tensor, iters: int) -> tuple[Tensor, Tensor]:
    """A guess of the free set from a few primal-dual active-set (semismooth Newton) steps.

    Each step frees the variables whose value exceeds their multiplier and re-solves; on these
    small problems it usually lands on the optimal set in two or three solves. Its guess is only
    a starting point: rows where it is infeasible start from the empty set, and Lawson-Hanson
    checks optimality either way.
    """
    passive = c < 0
    s = _masked_solve(q, c, passive)
    for _ in range(iters):
        update = (s - (s @ q + c)) > 0
        if bool((update == passive).all()):
            break
        passive = update
        s = _masked_solve(q, c, passive)
    feasible = ~(passive & (s <= 0)).any(dim=1, keepdim=True)
    return torch.where(feasible, s, torch.zeros_like(s)), passive & feasible


@torch.no_grad()
def project_weights(u: Tensor, gramian: Tensor, *, max_iter: int | None = None, warm_start_iters: int = 8) -> Tensor:
    """The minimisers ``v`` (one row per row of ``u``) of ``v^T G v`` subject to ``v >= u``.

    ``u`` has shape ``(b, m)``, ``gramian`` is a symmetric positive semi-definite ``(m, m)``
    matrix. Works in float64 and returns float64.
    """
    q = gramian.to(torch.float64)
    q = (q + q.T) / 2
    u = u.to(torch.float64)
    b, m = u.shape
    c = u @ q  # gradient of 1/2 x^T Q x + c^T x at x = 0
    scale = max(1.0, float(q.diagonal().abs().max()), float(c.abs().max()))
    tol = 1e-13 * scale
    rows = torch.arange(b, device=u.device)
    x, passive = _warm_start(q, c, warm_start_iters)
    max_iter = 3 * m + 10 if max_iter is None else max_iter
    for _ in range(max_iter):
        descent = -(x @ q + c)
        candidates = ~passive & (descent > tol)
        open_rows = candidates.any(dim=1)
        if not bool(open_rows.any()):
            break
        # Free the constraint whose multiplier is most negative, in each unfinished problem.
        enter = torch.where(candidates, descent, torch.full_like(descent, -torch.inf)).argmax(dim=1)
        passive[rows[open_rows], enter[open_rows]] = True
        for _ in range(m + 1):
            s = _masked_solve(q, c, passive)
            infeasible = passive & (s <= 0) & open_rows.unsqueeze(1)
            backtrack = infeasible.any(dim=1)
            x = torch.where((open_rows & ~backtrack).unsqueeze(1), s, x)
            if not bool(backtrack.any()):
                break
            # Move towards s until the first passive variable hits zero, then make it active.
            ratio = torch.where(infeasible, x / (x - s).clamp_min(torch.finfo(x.dtype).tiny), torch.full_like(x, torch.inf))
            alpha, leave = ratio.min(dim=1)
            alpha = alpha.clamp(0.0, 1.0)
            moved = x + alpha.unsqueeze(1) * (s - x)
            x = torch.where(backtrack.unsqueeze(1), moved, x)
            drop = backtrack.unsqueeze(1) & passive & (x <= 0)
            drop[rows[backtrack], leave[backtrack]] = True
            passive &= ~drop
            x = torch.where(passive, x, torch.zeros_like(x))
    else:
        unfinished = (~passive & (-(x @ q + c) > tol)).any(dim=1)
        if bool(unfinished.any()):
            raise RuntimeError(
                f"the dual-cone solver did not reach optimality in max_iter={max_iter} active-set steps "
                f"({int(unfinished.sum())} of {b} problems open); the Gramian may be badly scaled"
            )
    return u + x
