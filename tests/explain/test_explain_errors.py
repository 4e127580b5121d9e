"""Bad input raises ValueError/TypeError naming the argument and the allowed values."""
from __future__ import annotations

import pytest
import torch

from gradkit.explain import (
    attribution_prior,
    deletion_curve,
    expected_gradients,
    fullgrad,
    get_method,
    igos,
    integrated_gradients,
    model_randomization,
    saliency,
    smoothgrad,
)
from gradkit.explain.methods import METHODS


def test_unknown_method_name_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="attribution methods: " + ", ".join(METHODS)):
        get_method("gradcam")
    with pytest.raises(ValueError, match="did you mean 'smoothgrad'"):
        get_method("smoothgrd")


def test_integrated_gradients_arguments(mlp64, vectors64):
    with pytest.raises(ValueError, match=r"method must be one of \('riemann_left'"):
        integrated_gradients(mlp64, vectors64, 0, method="simpson")
    with pytest.raises(ValueError, match="steps must be an integer >= 2"):
        integrated_gradients(mlp64, vectors64, 0, method="riemann_trapezoid", steps=1)
    with pytest.raises(ValueError, match="internal_batch_size must be an integer >= 4"):
        integrated_gradients(mlp64, vectors64, 0, internal_batch_size=3)
    with pytest.raises(ValueError, match="baselines"):
        integrated_gradients(mlp64, vectors64, 0, baselines=torch.zeros(3, 10, dtype=torch.float64))


def test_target_checks(mlp64, vectors64):
    with pytest.raises(ValueError, match="one entry per input"):
        saliency(mlp64, vectors64, [0, 1])
    with pytest.raises(TypeError, match="target must hold integers"):
        saliency(mlp64, vectors64, torch.zeros(4))
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor"):
        saliency(mlp64, [[1.0, 2.0]], 0)


def test_smoothgrad_arguments(mlp64, vectors64):
    with pytest.raises(ValueError, match="noise_level or stdev, not both"):
        smoothgrad(mlp64, vectors64, 0, noise_level=0.1, stdev=0.1)
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        smoothgrad(mlp64, vectors64, 0, samples=0)
    with pytest.raises(ValueError, match="stdev must be a number >= 0"):
        smoothgrad(mlp64, vectors64, 0, stdev=-1.0)


def test_expected_gradients_arguments(mlp64, vectors64):
    with pytest.raises(ValueError, match="references must have shape"):
        expected_gradients(mlp64, vectors64, 0, references=torch.zeros(5, 9))
    with pytest.raises(ValueError, match="reference_indices must lie in"):
        expected_gradients(mlp64, vectors64, 0, references=torch.zeros(5, 10), reference_indices=torch.full((4, 2), 5))
    with pytest.raises(ValueError, match="prior must be one of"):
        attribution_prior(mlp64, vectors64, 0, references=vectors64, prior="l2")


def test_fullgrad_and_igos_arguments(cnn64, images64, mlp64, vectors64):
    with pytest.raises(ValueError, match="inputs must be"):
        fullgrad(mlp64, vectors64, 0)
    cnn64.train()
    with pytest.raises(ValueError, match="eval mode"):
        fullgrad(cnn64, images64, 0)
    cnn64.eval()
    with pytest.raises(ValueError, match="image inputs"):
        igos(mlp64, vectors64, 0)
    with pytest.raises(ValueError, match="mask_size must be"):
        igos(cnn64, images64, 0, mask_size=(2, 0))
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        igos(cnn64, images64, 0, decay=1.5)


def test_metric_arguments(mlp64, vectors64):
    with pytest.raises(ValueError, match="attributions must be a tensor of the inputs' shape"):
        deletion_curve(mlp64, vectors64, 0, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="mode must be one of"):
        model_randomization(mlp64, saliency, vectors64, 0, mode="random")


def test_errors_leave_the_model_untouched(cnn64, images64):
    before = {k: v.clone() for k, v in cnn64.state_dict().items()}
    with pytest.raises(ValueError):
        integrated_gradients(cnn64, images64, 0, method="bogus")
    with pytest.raises(ValueError):
        igos(cnn64, images64, 0, step_size=0)
    assert all(torch.equal(v, before[k]) for k, v in cnn64.state_dict().items())
    assert all(p.grad is None for p in cnn64.parameters())
