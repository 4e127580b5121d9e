from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from gradkit.combine import UPGrad
from gradkit.combine._dual_cone import project_weights


def degenerate_jacobians(seed: int):
    """Random Jacobians, plus the degenerate cases where QP solvers usually struggle."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for m, n in [(1, 5), (2, 7), (3, 4), (5, 12), (7, 3), (10, 30)]:
        j = torch.randn(m, n, generator=g, dtype=torch.float64)
        out.append(j)
        out.append(j * 1e3)  # large scale
        if m >= 2:
            par = j.clone()
            par[1] = 2.5 * par[0]  # parallel rows
            out.append(par)
            anti = j.clone()
            anti[1] = -0.7 * anti[0]  # directly conflicting rows
            out.append(anti)
            zero = j.clone()
            zero[0] = 0.0  # one zero row
            out.append(zero)
            dup = j.clone()
            dup[-1] = dup[0]  # duplicated row
            out.append(dup)
        out.append(torch.zeros(m, n, dtype=torch.float64))  # all zero
        out.append(torch.randn(m, 1, generator=g, dtype=torch.float64) @ torch.randn(1, n, generator=g, dtype=torch.float64))  # rank one, mixed signs
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_torchjd_upgrad(seed):
    agg_mod = pytest.importorskip("torchjd.aggregation", reason="torchjd is the reference implementation of UPGrad")
    pytest.importorskip("qpsolvers", reason="torchjd's UPGrad solves its QP with qpsolvers (torchjd[quadprog_projector])")
    pytest.importorskip("quadprog", reason="torchjd's UPGrad solves its QP with quadprog (torchjd[quadprog_projector])")
    reference = agg_mod.UPGrad()
    ours = UPGrad()
    for jac in degenerate_jacobians(seed):
        want = reference(jac)
        got = ours(jac)
        assert (got - want).abs().max() <= 1e-6 * max(1.0, float(want.abs().max())), jac


def test_matches_torchjd_in_float32():
    agg_mod = pytest.importorskip("torchjd.aggregation", reason="torchjd is the reference implementation of UPGrad")
    pytest.importorskip("qpsolvers", reason="torchjd's UPGrad needs qpsolvers")
    pytest.importorskip("quadprog", reason="torchjd's UPGrad needs quadprog")
    g = torch.Generator().manual_seed(5)
    for m in (2, 4, 8):
        jac = torch.randn(m, 50, generator=g)
        torch.testing.assert_close(UPGrad()(jac), agg_mod.UPGrad()(jac), atol=1e-6, rtol=1e-5)


def test_matches_torchjd_with_pref_vector():
    agg_mod = pytest.importorskip("torchjd.aggregation", reason="torchjd is the reference implementation of UPGrad")
    pytest.importorskip("qpsolvers", reason="torchjd's UPGrad needs qpsolvers")
    pytest.importorskip("quadprog", reason="torchjd's UPGrad needs quadprog")
    jac = torch.randn(3, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    pref = torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64)
    torch.testing.assert_close(UPGrad(pref)(jac), agg_mod.UPGrad(pref_vector=pref)(jac), atol=1e-6, rtol=0)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 6), n=st.integers(1, 10), seed=st.integers(0, 2**16), scale=st.sampled_from([1e-2, 1.0, 1e2]))
def test_update_does_not_conflict_with_any_row(m, n, seed, scale):
    g = torch.Generator().manual_seed(seed)
    jac = scale * torch.randn(m, n, generator=g, dtype=torch.float64)
    exact = UPGrad(reg_eps=0.0, norm_eps=0.0)
    if m <= n:  # rows independent almost surely: the exact projection is defined
        dots = jac @ exact(jac)
        assert float(dots.min()) >= -1e-9 * scale**2
    # With the default regularisation, the violation is bounded by reg_eps * trace(G) * max weight.
    # (norm_eps=0: below norm_eps the Gramian counts as zero and the output is the plain mean.)
    agg = UPGrad(norm_eps=0.0)
    dots = jac @ agg(jac)
    w = agg.diagnostics()["weights"]
    trace = float((jac * jac).sum())
    assert float(dots.min()) >= -(1e-4 * trace * float(w.abs().max()) + 1e-9 * scale**2)


@pytest.mark.parametrize("warm_start_iters", [0, 8])  # the active-set method alone, and warm-started
def test_kkt_conditions_of_the_dual_solver(warm_start_iters):
    g = torch.Generator().manual_seed(11)
    for m in (2, 5, 9, 16):
        a = torch.randn(m, m + 2, generator=g, dtype=torch.float64)
        gram = a @ a.T
        u = torch.rand(4, m, generator=g, dtype=torch.float64) - 0.3
        v = project_weights(u, gram, warm_start_iters=warm_start_iters)
        grad = v @ gram  # multipliers: >= 0, and zero where the bound is slack
        assert float((v - u).min()) >= -1e-12
        assert float(grad.min()) >= -1e-10
        slack = (v - u) > 1e-9
        assert float(torch.cat([grad[slack].abs(), torch.zeros(1, dtype=grad.dtype)]).max()) <= 1e-9


def test_gramian_below_norm_eps_counts_as_zero():
    jac = torch.tensor([[1e-3, 0.0], [-1e-3, 1e-3]], dtype=torch.float64)  # trace 3e-6 < 1e-4
    torch.testing.assert_close(UPGrad()(jac), jac.mean(0))
    assert float((jac @ UPGrad(norm_eps=0.0)(jac)).min()) > -1e-12


def test_non_conflicting_rows_give_the_mean():
    jac = torch.tensor([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.1, 0.1, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(UPGrad(reg_eps=0.0)(jac), jac.mean(0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="reg_eps"):
        UPGrad(reg_eps=-1.0)
    with pytest.raises(ValueError, match="norm_eps"):
        UPGrad(norm_eps=-1.0)
    with pytest.raises(ValueError, match="pref_vector"):
        UPGrad(torch.ones(2, 2))
    with pytest.raises(ValueError, match="pref_vector"):
        UPGrad(torch.ones(3))(torch.ones(2, 4))


def test_solver_reports_non_convergence_instead_of_returning_a_guess():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    u = torch.eye(6, dtype=torch.float64) / 6
    gram = a @ a.T
    v = project_weights(u, gram)
    assert bool(((v - u) > 1e-9).any())  # the problem needs active-set steps, so a zero budget must fail
    with pytest.raises(RuntimeError, match="max_iter"):
        project_weights(u, gram, max_iter=0, warm_start_iters=0)
