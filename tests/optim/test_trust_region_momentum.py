"""Non-Euclidean trust-region momentum: Newton-Schulz band, step norms, equations, behaviour, memory."""
from __future__ import annotations

import math

import pytest
import torch

import gradkit
from gradkit.transforms.orthogonalization import MUON_COEFFICIENTS, SINGULAR_VALUE_BAND, newton_schulz, orthogonalize
from gradkit.transforms.trust_region import shape_factor
from support import digits_batches, mlp, run_quadratic, side_by_side, synthetic_batches, train, twin


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_newton_schulz_singular_values_in_documented_band(dtype):
    g = torch.Generator().manual_seed(0)
    lo, hi = SINGULAR_VALUE_BAND
    for _ in range(40):
        m, n = torch.randint(2, 48, (2,), generator=g).tolist()
        # condition number up to 100 on the kept singular values
        u, _ = torch.linalg.qr(torch.randn(m, m, generator=g))
        v, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
        k = min(m, n)
        s = torch.logspace(0, -2, k) * torch.rand(1, generator=g).item() * 10
        x = u[:, :k] @ torch.diag(s) @ v[:, :k].T
        out = torch.linalg.svdvals(newton_schulz(x, dtype=dtype).double())
        assert out.min() >= lo and out.max() <= hi, (m, n, out.min().item(), out.max().item())


def test_orthogonalize_batches_equal_shapes_and_matches_one_by_one():
    g = torch.Generator().manual_seed(1)
    mats = [torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g), torch.randn(9, 3, generator=g)]
    batched = orthogonalize(mats, dtype=torch.float64)
    for m, b in zip(mats, batched):
        assert b.dtype == m.dtype and b.shape == m.shape
        torch.testing.assert_close(b, newton_schulz(m, dtype=torch.float64).float(), rtol=1e-6, atol=1e-6)


def _one_step(norm, lr=0.1, shapes=((6, 10), (10,), (4, 3, 2, 2))):
    g = torch.Generator().manual_seed(2)
    params = [torch.nn.Parameter(torch.randn(*s, generator=g)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    opt = gradkit.optim.TrustRegionMomentum(params, lr=lr, norm=norm, ns_dtype=torch.float32)
    before = [p.detach().clone() for p in params]
    opt.step()
    return [p.detach() - b for p, b in zip(params, before)], params


def test_linf_step_moves_every_coordinate_by_lr():
    steps, params = _one_step("linf")
    for s, p in zip(steps, params):
        torch.testing.assert_close(s.abs(), torch.full_like(s, 0.1))
        assert torch.equal(torch.sign(s), -torch.sign(p.grad))  # first momentum is (1 - beta) g


def test_l2_step_has_group_norm_lr():
    steps, params = _one_step("l2")
    total = math.sqrt(sum(s.pow(2).sum().item() for s in steps))
    assert math.isclose(total, 0.1, rel_tol=1e-5)
    grads = torch.cat([p.grad.flatten() for p in params])
    torch.testing.assert_close(torch.cat([s.flatten() for s in steps]), -0.1 * grads / grads.norm())


def test_spectral_step_has_spectral_norm_lr_times_shape_factor():
    steps, _ = _one_step("spectral")
    lo, hi = SINGULAR_VALUE_BAND
    for s in steps:
        matrix = s.reshape(1, -1) if s.ndim == 1 else s.reshape(s.shape[0], -1)
        top = torch.linalg.matrix_norm(matrix, ord=2).item() / (0.1 * shape_factor(s.shape, "muon"))
        assert lo <= top <= hi


def reference_step(params, bufs, norm, lr, beta, nesterov, weight_decay, ns_dtype):
    """The rule of arXiv:2503.12645 with Muon's momentum and NS (github.com/KellerJordan/Muon), per tensor."""
    directions = []
    for p in params:
        buf = bufs.setdefault(p, torch.zeros_like(p))
        buf.lerp_(p.grad, 1 - beta)
        directions.append(p.grad.lerp(buf, beta) if nesterov else buf.clone())
    if norm == "l2":
        total = torch.sqrt(sum((d**2).sum() for d in directions))
    for p, d in zip(params, directions):
        if norm == "linf":
            u = d.sign()
        elif norm == "l2":
            u = d / total
        else:
            x = d.reshape(d.shape[0], -1) if d.ndim >= 2 else d.reshape(1, -1)
            transpose = x.shape[0] > x.shape[1]
            x = (x.T if transpose else x).to(ns_dtype)
            x = x / (x.norm() + 1e-7)
            a, b, c = MUON_COEFFICIENTS
            for _ in range(5):
                gram = x @ x.T
                x = a * x + (b * gram + c * gram @ gram) @ x
            x = (x.T if transpose else x).float()
            rows, cols = (x.shape if d.ndim >= 2 else (1, d.numel()))
            u = x.reshape(d.shape) * max(1, rows / cols) ** 0.5
        p.mul_(1 - lr * weight_decay)
        p.add_(u, alpha=-lr)


@pytest.mark.parametrize("norm,lr,nesterov", [("spectral", 0.02, True), ("spectral", 0.02, False), ("linf", 1e-3, True),
                                              ("l2", 0.05, False)])
def test_matches_reference_equations(norm, lr, nesterov):
    model = mlp()
    reference = twin(model)
    opt = gradkit.optim.TrustRegionMomentum(model.parameters(), lr=lr, norm=norm, nesterov=nesterov, weight_decay=0.01,
                                            ns_dtype=torch.float64)
    bufs: dict = {}
    scale = 1000.0  # large gradients: NS's 1e-7 guard and sign(~0) are then far below rounding

    @torch.no_grad()
    def step_reference():
        reference_step(list(reference.parameters()), bufs, norm, lr, 0.95, nesterov, 0.01, torch.float64)

    assert side_by_side(model, opt, reference, step_reference, synthetic_batches(), loss_scale=scale) <= 1e-5


@pytest.mark.parametrize("norm,lr_quad,lr_mlp", [("spectral", 0.05, 0.05), ("linf", 0.02, 0.01), ("l2", 0.5, 0.3)])
def test_reduces_loss(norm, lr_quad, lr_mlp):
    first, last = run_quadratic(lambda p: gradkit.optim.TrustRegionMomentum(p, lr=lr_quad, norm=norm))
    assert last < 0.2 * first
    model = mlp()
    losses = train(model, gradkit.optim.TrustRegionMomentum(model.parameters(), lr=lr_mlp, norm=norm), 40, digits_batches())
    assert losses[-1] < 0.5 * losses[0]


def test_state_is_one_momentum_buffer():
    model = mlp()
    opt = gradkit.optim.TrustRegionMomentum(model.parameters())
    train(model, opt, 1, synthetic_batches(1))
    assert opt.state_bytes(by="kind")["moment"] == 4 * sum(p.numel() for p in model.parameters())
    plain = gradkit.optim.TrustRegionMomentum(mlp().parameters(), momentum=0.0)
    assert plain.state_bytes() == 0


def test_bad_arguments_raise_and_leave_nothing_behind():
    w = torch.nn.Parameter(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="norm"):
        gradkit.optim.TrustRegionMomentum([w], norm="l1")
    with pytest.raises(ValueError, match="shape_scale"):
        gradkit.optim.TrustRegionMomentum([w], shape_scale="wide")
    with pytest.raises(ValueError, match="ns_steps"):
        gradkit.optim.TrustRegionMomentum([w], ns_steps=0)
    opt = gradkit.optim.TrustRegionMomentum([w])
    with pytest.raises(ValueError, match="momentum"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], "momentum": 1.0})
    assert len(opt.param_groups) == 1
