from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradkit.inspect import HessianOperator, hutchinson_trace, plot_density, spectral_density, student_t_quantile


def test_student_t_quantile_against_tables():
    # Two-sided 95% critical values from standard tables.
    for df, value in [(1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (29, 2.045), (100, 1.984)]:
        assert student_t_quantile(0.975, df) == pytest.approx(value, abs=2e-3)


@pytest.mark.parametrize("confidence, low, high", [(0.9, 0.85, 0.95), (0.95, 0.915, 0.985)])
def test_trace_interval_covers_exact_trace_at_stated_confidence(mlp_problem, confidence, low, high):
    _, _, h, _ = mlp_problem
    exact = float(torch.trace(h))
    g = torch.Generator().manual_seed(0)
    trials = 400
    hits = sum(hutchinson_trace(h, 20, confidence=confidence, generator=g).contains(exact) for _ in range(trials))
    # The coverage is Binomial(400, c) / 400, standard deviation 0.015 (c = 0.9) or 0.011 (c = 0.95):
    # the bounds are three of them either side, so a correct interval passes and a too-narrow
    # (e.g. normal-quantile with the wrong variance) or too-wide one fails.
    assert low <= hits / trials <= high, hits / trials


def test_trace_on_hessian_operator_equals_matrix_version(mlp_problem):
    model, batch, h, _ = mlp_problem
    op = HessianOperator(model, F.cross_entropy, batch)
    a = hutchinson_trace(op, 10, generator=torch.Generator().manual_seed(7))
    b = hutchinson_trace(h, 10, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a.samples, b.samples, rtol=1e-10, atol=1e-12)
    assert a.num_hvps == 10 and a.interval[0] < a.trace < a.interval[1]
    with pytest.raises(ValueError, match="num_samples must be an integer >= 2"):
        hutchinson_trace(h, 1)
    with pytest.raises(ValueError, match="distribution must be one of"):
        hutchinson_trace(h, 5, distribution="uniform")


def test_density_integrates_to_one_and_nodes_are_eigenvalues(mlp_problem):
    model, batch, h, _ = mlp_problem
    op = HessianOperator(model, F.cross_entropy, batch)
    exact = torch.linalg.eigvalsh(h)
    d = spectral_density(op, num_iter=op.size, num_runs=2, generator=torch.Generator().manual_seed(0))
    assert d.integral() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(d.weights.sum(1), torch.ones(2, dtype=torch.float64))
    # With a full Krylov space every weighted node is an exact eigenvalue.
    weighted = d.nodes[d.weights > 1e-8]
    distance = (weighted[:, None] - exact[None, :]).abs().min(1).values
    assert float(distance.max()) < 1e-6 * float(exact.abs().max())
    assert d.mass_between(-float("inf"), float("inf")) == pytest.approx(1.0)
    # Fewer steps: still a probability density, with Ritz values inside the spectrum.
    short = spectral_density(op, num_iter=12, num_runs=3, generator=torch.Generator().manual_seed(1))
    assert short.integral() == pytest.approx(1.0, abs=1e-6)
    span = float(exact[-1] - exact[0])
    assert exact[0] - 1e-9 * span <= short.nodes.min() and short.nodes.max() <= exact[-1] + 1e-9 * span
    with pytest.raises(ValueError, match="sigma must be > 0"):
        spectral_density(op, sigma=0.0)


def test_plot_density_writes_png(mlp_problem, tmp_path):
    _, _, h, _ = mlp_problem
    d = spectral_density(h, num_iter=10, generator=torch.Generator().manual_seed(0))
    path = plot_density({"mlp": d}, tmp_path / "density.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
