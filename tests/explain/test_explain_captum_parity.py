"""Same numbers as Captum where Captum has the method (float64 models, max relative difference <= 1e-5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

captum_attr = pytest.importorskip("captum.attr", reason="parity tests compare against the captum package")

from gradkit.explain import expected_gradients, input_x_gradient, integrated_gradients, saliency, smoothgrad

TOL = 1e-5
TARGET = torch.tensor([0, 3, 1])


@pytest.mark.parametrize("use_abs", [True, False])
def test_saliency_matches_captum(cnn64, images64, max_rel_diff, use_abs):
    ours = saliency(cnn64, images64, TARGET, abs=use_abs)
    ref = captum_attr.Saliency(cnn64).attribute(images64, target=TARGET, abs=use_abs)
    assert ours.shape == images64.shape
    assert max_rel_diff(ours, ref) <= TOL


def test_input_x_gradient_matches_captum(cnn64, images64, max_rel_diff):
    ours = input_x_gradient(cnn64, images64, TARGET)
    ref = captum_attr.InputXGradient(cnn64).attribute(images64, target=TARGET)
    assert max_rel_diff(ours, ref) <= TOL


@pytest.mark.parametrize("method", ["riemann_left", "riemann_right", "riemann_middle", "gausslegendre"])
def test_integrated_gradients_matches_captum(cnn64, images64, max_rel_diff, method):
    baselines = torch.full_like(images64, 0.1)
    ours, err = integrated_gradients(cnn64, images64, TARGET, baselines=baselines, steps=20, method=method, return_error=True)
    ref, delta = captum_attr.IntegratedGradients(cnn64).attribute(
        images64, baselines=baselines, target=TARGET, n_steps=20, method=method, return_convergence_delta=True
    )
    assert max_rel_diff(ours, ref) <= TOL
    assert max_rel_diff(err, delta) <= TOL


def test_integrated_gradients_trapezoid_is_captums_rescaled(cnn64, images64, max_rel_diff):
    # Captum's trapezoid weights are 1/n (ends halved), summing to (n-1)/n; ours are the trapezoid
    # rule's 1/(n-1). The two differ by exactly that factor, nothing else.
    n = 20
    ours = integrated_gradients(cnn64, images64, TARGET, steps=n, method="riemann_trapezoid")
    ref = captum_attr.IntegratedGradients(cnn64).attribute(images64, target=TARGET, n_steps=n, method="riemann_trapezoid")
    assert max_rel_diff(ours * (n - 1) / n, ref) <= TOL
    assert max_rel_diff(ours, ref) > 1e-2  # the rescaling is really needed


def test_integrated_gradients_internal_batching_matches_captum(mlp64, vectors64, max_rel_diff):
    target = torch.tensor([0, 1, 2, 3])
    ours = integrated_gradients(mlp64, vectors64, target, steps=30, internal_batch_size=12)
    ref = captum_attr.IntegratedGradients(mlp64).attribute(vectors64, target=target, n_steps=30, internal_batch_size=12)
    assert max_rel_diff(ours, ref) <= TOL


@pytest.mark.parametrize("squared", [False, True])
def test_smoothgrad_matches_noise_tunnel_with_the_same_seed(cnn64, images64, max_rel_diff, squared):
    torch.manual_seed(11)
    ref = captum_attr.NoiseTunnel(captum_attr.Saliency(cnn64)).attribute(
        images64, nt_type="smoothgrad_sq" if squared else "smoothgrad", nt_samples=7, stdevs=0.2, target=TARGET
    )
    torch.manual_seed(11)
    ours = smoothgrad(cnn64, images64, TARGET, samples=7, stdev=0.2, squared=squared)
    assert max_rel_diff(ours, ref) <= TOL


def test_smoothgrad_of_integrated_gradients_matches_noise_tunnel(cnn64, images64, max_rel_diff):
    baselines = torch.rand(images64.shape, generator=torch.Generator().manual_seed(5), dtype=images64.dtype)
    torch.manual_seed(4)
    ref = captum_attr.NoiseTunnel(captum_attr.IntegratedGradients(cnn64)).attribute(
        images64, nt_type="smoothgrad", nt_samples=4, stdevs=0.1, target=TARGET, baselines=baselines, n_steps=10
    )
    torch.manual_seed(4)
    ours = smoothgrad(cnn64, images64, TARGET, method=integrated_gradients, samples=4, stdev=0.1, baselines=baselines, steps=10)
    assert max_rel_diff(ours, ref) <= TOL


def test_expected_gradients_matches_gradient_shap_with_identical_samples(cnn64, images64, max_rel_diff):
    references = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    n, k = images64.shape[0], 6
    np.random.seed(3)
    ref = captum_attr.GradientShap(cnn64).attribute(images64, baselines=references, n_samples=k, stdevs=0.0, target=TARGET)
    # GradientShap draws the reference rows, then the interpolation points, from numpy's global
    # generator, sample-major; replay the same draws.
    np.random.seed(3)
    indices = torch.from_numpy(np.random.choice(references.shape[0], n * k)).view(n, k)
    alphas = torch.from_numpy(np.random.uniform(0.0, 1.0, n * k)).view(n, k)
    ours = expected_gradients(cnn64, images64, TARGET, references=references, reference_indices=indices, alphas=alphas)
    assert max_rel_diff(ours, ref) <= TOL
