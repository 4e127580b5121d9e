from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradkit.inspect import (
    NoiseScaleEstimate,
    NoiseScaleTracker,
    WeightSnapshot,
    gradient_norms,
    noise_scale_from_norms,
    per_example_noise_scale,
    scale_invariant_parameters,
    two_batch_noise_scale,
)
from gradkit.models import DigitsCNN

from inspect_helpers import small_batch, small_mlp


class Shift(nn.Module):
    """loss_i = 0.5 ||w - x_i||^2: per-example gradient w - x_i, so G = w - mu and tr(Sigma) = sum sigma^2."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return self.w - x


def half_square(outputs, targets):
    return 0.5 * outputs.pow(2).sum(1).mean()


def test_per_example_matches_brute_force_and_two_batch_with_singletons():
    model = small_mlp()
    x, y = small_batch(n=12)
    grads = []
    for i in range(12):
        g = torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), list(model.parameters()))
        grads.append(torch.cat([t.reshape(-1) for t in g]))
    grads = torch.stack(grads)
    mean = grads.mean(0)
    trace = float((grads - mean).pow(2).sum() / 11)
    est = per_example_noise_scale(model, F.cross_entropy, (x, y), chunk_size=5)
    assert est.trace_covariance == pytest.approx(trace, rel=1e-10)
    assert est.gradient_sq_norm == pytest.approx(float(mean.pow(2).sum()) - trace / 12, rel=1e-10)
    # McCandlish et al.'s two-batch estimator with b = 1 is algebraically the same estimator.
    two = two_batch_noise_scale(model, F.cross_entropy, (x, y), 1)
    assert two.trace_covariance == pytest.approx(est.trace_covariance, rel=1e-10)
    assert two.gradient_sq_norm == pytest.approx(est.gradient_sq_norm, rel=1e-10)
    # With 12 examples |G|^2 can be estimated negative; the ratio is then reported as nan.
    assert NoiseScaleEstimate(2.0, 6.0).simple_noise_scale == 3.0
    assert NoiseScaleEstimate(-1.0, 6.0).simple_noise_scale != NoiseScaleEstimate(-1.0, 6.0).simple_noise_scale


def test_estimators_are_unbiased_on_a_known_problem():
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    sigma = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    model = Shift(torch.zeros(4, dtype=torch.float64))
    true_g2, true_s = float(mu.pow(2).sum()), float(sigma.pow(2).sum())
    two, per = [], []
    for _ in range(300):
        x = mu + sigma * torch.randn(32, 4, generator=g, dtype=torch.float64)
        batch = (x, torch.zeros(32))
        two.append(two_batch_noise_scale(model, half_square, batch, 8))
        per.append(per_example_noise_scale(model, half_square, batch))
    for ests in (two, per):
        g2 = torch.tensor([e.gradient_sq_norm for e in ests])
        s = torch.tensor([e.trace_covariance for e in ests])
        assert abs(float(g2.mean()) - true_g2) < 4 * float(g2.std()) / 300**0.5
        assert abs(float(s.mean()) - true_s) < 4 * float(s.std()) / 300**0.5
    tracker = NoiseScaleTracker(beta=0.95)
    for e in per:
        smoothed = tracker.update(e)
    assert smoothed == pytest.approx(true_s / true_g2, rel=0.2)


def test_noise_scale_bad_input():
    model = small_mlp()
    x, y = small_batch(n=12)
    with pytest.raises(ValueError, match="small_batch must divide"):
        two_batch_noise_scale(model, F.cross_entropy, (x, y), 5)
    with pytest.raises(ValueError, match="small_batch and big_batch"):
        noise_scale_from_norms(1.0, 0.5, 8, 8)
    bn = DigitsCNN(channels=2).train()
    with pytest.raises(ValueError, match="batch norm in training mode"):
        per_example_noise_scale(bn, F.cross_entropy, (torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)))


def test_weight_snapshot_reports_update_ratio_angle_and_growth():
    model = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, 4.0, 0.0]]))
    snap = WeightSnapshot(model)
    with torch.no_grad():
        model.weight.add_(torch.tensor([[0.0, 0.0, 5.0]]))  # orthogonal step: a pure rotation plus growth
    out = snap.compare()["weight"]
    assert out["update_ratio"] == pytest.approx(1.0)
    assert out["angular_update"] == pytest.approx(torch.pi / 4)
    assert out["weight_norm"] == pytest.approx(50**0.5)
    assert out["norm_growth"] == pytest.approx(50**0.5 / 5)


def test_gradient_norms_and_scale_invariant_parameters_on_digits_cnn():
    torch.manual_seed(0)
    model = DigitsCNN(channels=4).train()
    x = torch.randn(16, 1, 8, 8)
    y = torch.randint(0, 10, (16,))
    assert scale_invariant_parameters(model, F.cross_entropy, (x, y)) == ["conv1.weight", "conv2.weight"]
    assert all(p.grad is None for p in model.parameters())
    F.cross_entropy(model(x), y).backward()
    norms = gradient_norms(model)
    assert norms["head.weight"] == pytest.approx(float(model.head.weight.grad.norm()))
    assert set(norms) == {n for n, _ in model.named_parameters()}
