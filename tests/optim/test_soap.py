"""SOAP against pytorch-optimizer's port of the official code, and its eigenbasis."""
from __future__ import annotations

import pytest
import torch

from gradkit.optim import SOAP

from _frontier_support import cnn_parity
from support import check_rejects, check_staggered_steps

TOL = 1e-5


def _po():
    return pytest.importorskip("pytorch_optimizer", reason="parity needs pytorch-optimizer: pip install pytorch-optimizer")


@pytest.mark.parametrize("kw", [
    dict(),
    dict(precondition_1d=True, precondition_frequency=3, betas=(0.9, 0.99), shampoo_beta=0.9),
    dict(max_precondition_dim=8, correct_bias=False, eps=1e-6),  # the 128-wide dim of the last layer has no factor
])
def test_matches_pytorch_optimizer(kw):
    # pytorch-optimizer's SOAP follows the official code step for step (its decay comes after the step,
    # gradkit's before it, so the comparison is without decay; see test_decay_order).
    po = _po()
    assert cnn_parity(lambda p: SOAP(p, lr=1e-3, weight_decay=0.0, **kw),
                      lambda p: po.SOAP(p, lr=1e-3, weight_decay=0.0, **kw)) <= TOL


def test_decay_order():
    # one step after the first: official p' = (p - s u)(1 - lr wd); gradkit p' = p (1 - lr wd) - s u
    po = _po()
    torch.manual_seed(0)
    grads = [torch.randn(4, 3) for _ in range(2)]
    a, b, c = (torch.nn.Parameter(torch.ones(4, 3)) for _ in range(3))
    ours, official, plain = SOAP([a], lr=0.1, weight_decay=0.5), po.SOAP([b], lr=0.1, weight_decay=0.5), \
        SOAP([c], lr=0.1, weight_decay=0.0)
    for g in grads:
        for p, opt in ((a, ours), (b, official), (c, plain)):
            p.grad = g.clone()
            opt.step()
    step = c.detach() - 1.0  # -s u
    torch.testing.assert_close(a.detach(), 1.0 * (1 - 0.05) + step)
    torch.testing.assert_close(b.detach(), (1.0 + step) * (1 - 0.05))


def test_basis_is_the_eigenbasis_of_the_factors_after_a_refresh():
    # gradients U diag(s_t) V^T with fixed U, V: the factors are U diag(sum s^2) U^T and V diag(...) V^T, with
    # distinct eigenvalues; after the refresh each basis is their eigenvector matrix (up to signs), in
    # decreasing order of eigenvalue
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(6, 6))
    v, _ = torch.linalg.qr(torch.randn(4, 4))
    w = torch.nn.Parameter(torch.zeros(6, 4))
    opt = SOAP([w], lr=0.01, precondition_frequency=5)
    for t in range(6):  # steps 1..6: the refresh runs after step 6 (s = 5)
        s = torch.tensor([4.0, 3.0, 2.0, 1.0]) * (1 + 0.1 * torch.rand(4))
        w.grad = u[:, :4] @ torch.diag(s) @ v.T
        opt.step()
    state = opt.state[w]
    for factor, basis in ((state["soap.factor0"], state["soap.basis0"]), (state["soap.factor1"], state["soap.basis1"])):
        values, vectors = torch.linalg.eigh(factor.double())
        top = vectors[:, values > 1e-6 * values.max()].flip(1)  # the nonzero part, decreasing
        k = top.shape[1]
        overlap = (basis[:, :k].double().T @ top).abs()
        torch.testing.assert_close(overlap, torch.eye(k, dtype=torch.float64), atol=1e-5, rtol=0)
        rayleigh = torch.diag(basis.double().T @ factor.double() @ basis.double())
        assert (rayleigh[:k].diff() <= 1e-9).all()  # decreasing


def test_first_step_moves_nothing():
    w = torch.nn.Parameter(torch.ones(3, 2))
    opt = SOAP([w], lr=0.1, weight_decay=0.5)
    w.grad = torch.randn(3, 2)
    opt.step()
    assert torch.equal(w.detach(), torch.ones(3, 2))


def test_tensors_at_different_steps():
    check_staggered_steps(lambda p: SOAP(p, lr=1e-2, precondition_frequency=2))


def test_state_layout():
    w, b = torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(5))
    opt = SOAP([w, b], max_precondition_dim=4)
    w.grad, b.grad = torch.randn(5, 3), torch.randn(5)
    opt.step()
    assert set(opt.state[w]) == {"step", "soap.exp_avg", "soap.exp_avg_sq", "soap.factor1", "soap.basis1"}
    assert set(opt.state[b]) == {"step", "soap.exp_avg", "soap.exp_avg_sq"}
    kinds = opt.state_bytes(by="kind")
    assert kinds["preconditioner"] == 2 * 9 * 4  # the factor and the eigenbasis of dim 1
    assert kinds["moment"] == 2 * (15 + 5) * 4
    assert opt.transform.kind_of("soap.exp_avg_sq").non_negative


@pytest.mark.parametrize("bad", [dict(precondition_frequency=0), dict(max_precondition_dim=1.5), dict(shampoo_beta=1.0),
                                 dict(precondition_1d="no"), dict(betas=(0.9, 1.0))])
def test_bad_arguments(bad):
    check_rejects(SOAP, **bad)
