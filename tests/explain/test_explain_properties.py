"""Properties the papers prove or claim: completeness, exactness on linear models, I-GOS's deletion AUC."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gradkit.datasets import digits
from gradkit.explain import (
    PATH_METHODS,
    deletion_curve,
    expected_gradients,
    fullgrad,
    fullgrad_decomposition,
    igos,
    input_x_gradient,
    integrated_gradients,
    path_rule,
    saliency,
    smoothgrad,
)
from gradkit.models import DigitsCNN, digits_mlp


@pytest.mark.parametrize("method", PATH_METHODS)
def test_path_rules_integrate_polynomials(method):
    alphas, weights = path_rule(method, 9)
    assert torch.isclose(weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert alphas.min() >= 0 and alphas.max() <= 1
    # every rule integrates a line exactly; Gauss-Legendre with 9 points integrates degree 17 exactly
    assert torch.isclose((weights * alphas).sum(), torch.tensor(0.5, dtype=torch.float64), atol=1e-12) or method in ("riemann_left", "riemann_right")
    if method == "gausslegendre":
        assert torch.isclose((weights * alphas**17).sum(), torch.tensor(1 / 18, dtype=torch.float64), atol=1e-14)


@pytest.mark.parametrize("method", ["riemann_middle", "riemann_trapezoid", "gausslegendre"])
def test_completeness_error_shrinks_with_steps(method):
    torch.manual_seed(0)
    model = digits_mlp(hidden=32).eval()
    x = digits("val").inputs[:8]
    errors = [integrated_gradients(model, x, 3, steps=s, method=method, return_error=True)[1].abs().max().item() for s in (4, 16, 64, 256)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-3


def test_completeness_error_is_sum_minus_score_difference(mlp64, vectors64):
    attr, err = integrated_gradients(mlp64, vectors64, 2, baselines=0.3, steps=16, return_error=True)
    with torch.no_grad():
        gap = mlp64(vectors64)[:, 2] - mlp64(torch.full_like(vectors64, 0.3))[:, 2]
    torch.testing.assert_close(err, attr.sum(1) - gap)


@pytest.fixture
def linear64():
    torch.manual_seed(1)
    return nn.Linear(10, 3).double()


@pytest.mark.parametrize("method", PATH_METHODS)
def test_linear_model_ig_is_weight_times_input_minus_baseline(linear64, vectors64, method):
    baselines = torch.linspace(-1, 1, 10, dtype=torch.float64)
    target = torch.tensor([0, 2, 1, 2])
    attr = integrated_gradients(linear64, vectors64, target, baselines=baselines, steps=7, method=method)
    expected = linear64.weight[target].detach() * (vectors64 - baselines)
    torch.testing.assert_close(attr, expected, rtol=1e-12, atol=0)


def test_linear_model_other_methods_are_exact(linear64, vectors64):
    w = linear64.weight[1].detach().expand_as(vectors64)
    torch.testing.assert_close(saliency(linear64, vectors64, 1, abs=False), w, rtol=0, atol=0)
    torch.testing.assert_close(input_x_gradient(linear64, vectors64, 1), w * vectors64, rtol=0, atol=0)
    refs = torch.randn(5, 10, dtype=torch.float64)
    eg = expected_gradients(linear64, vectors64, 1, references=refs, samples=50, generator=torch.Generator().manual_seed(0))
    idx = torch.randint(5, (4, 50), generator=torch.Generator().manual_seed(0))
    expected = (w.unsqueeze(1) * (vectors64.unsqueeze(1) - refs[idx])).mean(1)
    torch.testing.assert_close(eg, expected, rtol=1e-12, atol=1e-14)
    # the gradient of a linear model does not depend on the input, so SmoothGrad leaves it alone
    torch.testing.assert_close(smoothgrad(linear64, vectors64, 1, abs=False, samples=5), w, rtol=1e-12, atol=0)


def test_expected_gradients_is_unbiased_for_ig_with_one_reference(mlp64, vectors64):
    ref = torch.zeros(1, 10, dtype=torch.float64)
    eg = expected_gradients(mlp64, vectors64, 0, references=ref, samples=4000, generator=torch.Generator().manual_seed(0))
    ig = integrated_gradients(mlp64, vectors64, 0, steps=64)
    assert (eg - ig).abs().max() < 0.05 * ig.abs().max()


def test_fullgrad_completeness_on_digits_cnn():
    torch.manual_seed(0)
    model = DigitsCNN().double().eval()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    x = digits("val", image=True).inputs[:4].double()
    target = torch.tensor([1, 2, 3, 4])
    input_grad, bias_grads = fullgrad_decomposition(model, x, target)
    assert len(bias_grads) == 3  # two batch norms (implicit biases) and the head; the convs have none
    total = (input_grad * x).flatten(1).sum(1) + sum(g.flatten(1).sum(1) for g in bias_grads)
    with torch.no_grad():
        torch.testing.assert_close(total, model(x)[torch.arange(4), target], rtol=1e-10, atol=1e-10)
    saliency_map = fullgrad(model, x, target)
    assert saliency_map.shape == x.shape and saliency_map.min() >= 0
    # each rescaled term lies in [0, 1] per channel: 1 input channel + 16 + 32 batch-norm channels
    assert saliency_map.max() <= 1 + 16 + 32 + 1e-9


def test_igos_masks_stay_in_unit_interval_and_beat_saliency_on_deletion(trained_cnn):
    val = digits("val", image=True)
    x, y = val.inputs[:8], val.targets[:8]
    attr, mask = igos(trained_cnn, x, y, mask_size=8, iterations=10, generator=torch.Generator().manual_seed(0), return_mask=True)
    assert mask.shape == (8, 1, 8, 8)
    assert mask.min() >= 0 and mask.max() <= 1
    assert torch.equal(attr, (1 - mask).expand_as(x))
    assert (mask < 1).any()  # it did move
    igos_auc = deletion_curve(trained_cnn, x, y, attr).auc.mean()
    saliency_auc = deletion_curve(trained_cnn, x, y, saliency(trained_cnn, x, y)).auc.mean()
    assert igos_auc < saliency_auc


def test_igos_low_resolution_mask_is_upsampled(trained_cnn):
    x = digits("val", image=True).inputs[:2]
    attr, mask = igos(trained_cnn, x, None, mask_size=(2, 4), iterations=3, generator=torch.Generator().manual_seed(0), return_mask=True)
    assert mask.shape == (2, 1, 2, 4) and attr.shape == x.shape
    assert mask.min() >= 0 and mask.max() <= 1
    assert attr.min() >= 0 and attr.max() <= 1


def test_internal_batching_does_not_change_the_numbers(cnn64, images64):
    full, err = integrated_gradients(cnn64, images64, 1, steps=10, return_error=True)
    chunked, err_chunked = integrated_gradients(cnn64, images64, 1, steps=10, internal_batch_size=7, return_error=True)
    torch.testing.assert_close(chunked, full, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(err_chunked, err, rtol=1e-10, atol=1e-12)
    a = smoothgrad(cnn64, images64, 1, samples=6, generator=torch.Generator().manual_seed(0))
    b = smoothgrad(cnn64, images64, 1, samples=6, samples_batch_size=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_smoothgrad_noise_level_is_relative_to_the_input_range(mlp64, vectors64):
    # zero noise gives the wrapped method back; the relative level scales with the input's range
    torch.testing.assert_close(smoothgrad(mlp64, vectors64, 0, noise_level=0.0, samples=3), saliency(mlp64, vectors64, 0))
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = smoothgrad(mlp64, vectors64, 0, noise_level=0.1, samples=3, abs=False, generator=gen())
    b = smoothgrad(mlp64, vectors64, 0, stdev=0.1, samples=3, abs=False, generator=gen())
    span = (vectors64.amax(1) - vectors64.amin(1))
    assert not torch.allclose(a, b)
    noise = torch.randn((4, 3, 10), generator=gen()).double()
    expected = saliency(mlp64, (vectors64.unsqueeze(1) + 0.1 * span.view(4, 1, 1) * noise).reshape(12, 10), torch.zeros(12, dtype=torch.long), abs=False)
    torch.testing.assert_close(a, expected.view(4, 3, 10).mean(1))


hypothesis = pytest.importorskip("hypothesis", reason="property-based tests use hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(
    features=st.integers(1, 6),
    classes=st.integers(1, 4),
    batch=st.integers(1, 3),
    steps=st.integers(2, 9),
    method=st.sampled_from(PATH_METHODS),
    seed=st.integers(0, 2**16),
)
def test_ig_on_any_affine_model_is_exact(features, classes, batch, steps, method, seed):
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(features, classes).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(classes, features, generator=gen, dtype=torch.float64))
        model.bias.copy_(torch.randn(classes, generator=gen, dtype=torch.float64))
    x = torch.randn(batch, features, generator=gen, dtype=torch.float64)
    b = torch.randn(batch, features, generator=gen, dtype=torch.float64)
    target = torch.randint(classes, (batch,), generator=gen)
    attr, err = integrated_gradients(model, x, target, baselines=b, steps=steps, method=method, return_error=True)
    torch.testing.assert_close(attr, model.weight[target].detach() * (x - b), rtol=1e-12, atol=1e-12)
    assert err.abs().max() < 1e-10
