"""Shampoo against pytorch-optimizer's original Shampoo, and its inverse Kronecker roots, blocks and grafting."""
from __future__ import annotations

import pytest
import torch

from gradkit.optim import Shampoo
from gradkit.transforms.shampoo import BlockLayout, merge_small_dims

from _frontier_support import cnn_parity
from support import check_rejects, check_staggered_steps

TOL = 1e-5
ORIGINAL = dict(betas=(0.0, 1.0), grafting="none", use_bias_correction=False, merge_dims=False)


def _po():
    return pytest.importorskip("pytorch_optimizer", reason="parity needs pytorch-optimizer: pip install pytorch-optimizer")


def test_original_shampoo_matches_pytorch_optimizer():
    # pytorch-optimizer's Shampoo is Gupta et al.'s: L = eps I + sum G G^T, roots -1/(2k) of every dim, taken
    # by a float32 SVD (gradkit: eigh). With eps = 1e-6 the factors' condition numbers reach 1e6 and the two
    # decompositions' float32 rounding differs visibly after a few tens of steps (1e-4 at step 50).
    po = _po()
    assert cnn_parity(lambda p: Shampoo(p, lr=1e-3, epsilon=1e-3, **ORIGINAL),
                      lambda p: po.Shampoo(p, lr=1e-3, matrix_eps=1e-3)) <= TOL


def _dense_root(m, root, eps):
    values, vectors = torch.linalg.eigh(m.double() + eps * torch.eye(m.shape[0], dtype=torch.float64))
    return vectors @ torch.diag(values ** (-1.0 / root)) @ vectors.T


def test_recovers_the_exact_inverse_kronecker_root():
    # factors with known spectra: G = U diag(s) V^T gives L = U diag(s^2) U^T and R = V diag(s^2) V^T, and the
    # preconditioned step (L kron R)^(-1/4) vec(G) computed densely in float64
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    s = torch.tensor([3.0, 1.5, 0.5], dtype=torch.float64)
    g = (u[:, :3] @ torch.diag(s) @ v.T)
    w = torch.nn.Parameter(torch.zeros(4, 3))
    eps = 1e-4
    opt = Shampoo([w], lr=1.0, epsilon=eps, **ORIGINAL)
    w.grad = g.float()
    opt.step()
    left, right = g @ g.T, g.T @ g
    torch.testing.assert_close(opt.state[w]["shampoo.factor0"][0].double(), left, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(opt.state[w]["shampoo.root0"][0].double(), _dense_root(left, 4, eps), rtol=1e-4, atol=1e-4)
    kron = torch.kron(left + eps * torch.eye(4, dtype=torch.float64), right + eps * torch.eye(3, dtype=torch.float64))
    values, vectors = torch.linalg.eigh(kron)
    expected = -(vectors @ torch.diag(values ** -0.25) @ vectors.T @ g.reshape(-1)).reshape(4, 3)
    torch.testing.assert_close(w.detach().double(), expected, rtol=1e-4, atol=1e-4)


def test_blocks_are_preconditioned_independently():
    torch.manual_seed(0)
    g = torch.randn(4, 6)
    w = torch.nn.Parameter(torch.zeros(4, 6))
    opt = Shampoo([w], lr=1.0, epsilon=1e-2, max_preconditioner_dim=3, **ORIGINAL)
    w.grad = g.clone()
    opt.step()
    assert opt.state[w]["shampoo.factor0"].shape == (4, 3, 3)  # 2 x 2 blocks of 3 x 3 (rows padded from 4 to 6)
    for r0, r1 in ((0, 3), (3, 4)):
        for c0, c1 in ((0, 3), (3, 6)):
            block = g[r0:r1, c0:c1].double()
            expected = -_dense_root(block @ block.T, 4, 1e-2) @ block @ _dense_root(block.T @ block, 4, 1e-2)
            torch.testing.assert_close(w.detach()[r0:r1, c0:c1].double(), expected, rtol=1e-4, atol=1e-5)


def test_block_layout_round_trip_and_merging():
    assert merge_small_dims([8, 1, 3, 3], 16) == [8, 9]
    assert merge_small_dims([2, 3, 4], 100) == [24]
    x = torch.randn(5, 1, 7)
    lay = BlockLayout(x.shape, 4, merge=True)
    assert lay.dims == [5, 7] and lay.count == [2, 2]
    torch.testing.assert_close(lay.from_blocks(lay.to_blocks(x)), x)


@pytest.mark.parametrize("grafting", ["sgd", "adam", "adagrad"])
def test_grafting_takes_the_norm_of_the_grafted_method(grafting):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(3, 5))
    opt = Shampoo([w], lr=1.0, betas=(0.0, 0.99), grafting=grafting, grafting_beta2=0.9, grafting_eps=1e-8)
    g = torch.randn(3, 5)
    w.grad = g.clone()
    opt.step()
    graft = {"sgd": g, "adam": g / (g.abs() + 1e-8), "adagrad": g / (g.abs() + 1e-8)}[grafting]
    torch.testing.assert_close(w.detach().norm(), graft.norm(), rtol=1e-5, atol=0)
    assert not torch.allclose(w.detach() / w.detach().norm(), -graft / graft.norm(), atol=1e-3)  # direction: Shampoo's


def test_start_preconditioning_step_uses_the_graft_before():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(3, 5))
    opt = Shampoo([w], lr=1.0, betas=(0.0, 0.99), grafting="adam", grafting_beta2=0.9, start_preconditioning_step=3)
    g = torch.randn(3, 5)
    w.grad = g.clone()
    opt.step()
    torch.testing.assert_close(w.detach(), -g / (g.abs() + 1e-10))


def test_tensors_at_different_steps():
    check_staggered_steps(lambda p: Shampoo(p, lr=1e-2, precondition_frequency=2))


@pytest.mark.parametrize("bad", [dict(grafting="rmsprop"), dict(start_preconditioning_step=0),
                                 dict(precondition_frequency=0), dict(betas=(0.9, 0.0)), dict(epsilon=0.0),
                                 dict(max_preconditioner_dim=0)])
def test_bad_arguments(bad):
    check_rejects(Shampoo, **bad)


@pytest.mark.parametrize("name", ["shampoo", "soap", "psgd_kron", "prodigy", "schedule_free_adamw", "mars"])
def test_memory_estimate_equals_the_state_after_a_step(name):
    from gradkit.memory import estimate
    from gradkit.registry import get_optimizer

    from _frontier_support import smooth_cnn

    model = smooth_cnn()
    opt = get_optimizer(name)(model.parameters())
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    opt.step()
    assert estimate(model, name) == opt.state_bytes() > 0
