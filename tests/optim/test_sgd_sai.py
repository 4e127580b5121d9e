"""SGD-SaI: against the official code's equations (pytorch_optimizer.SGDSaI deviates from them), memory."""
from __future__ import annotations

import pytest
import torch

import gradkit
from support import (
    digits_batches,
    adamw_moment_bytes,
    max_relative_difference,
    mlp,
    run_quadratic,
    side_by_side,
    synthetic_batches,
    train,
    twin,
)


def official_step(params, states, lr, momentum, eps, weight_decay, normalize=True, estimator="gsnr"):
    """github.com/AnonymousAlethiometer/SGD_SaI, sgd_sai.py v1.0.4 (v1.1.0 for sqrt_numel), one tensor at a time."""
    if "max" not in states:
        for p in params:
            g = p.grad
            if estimator == "gsnr":
                states[p] = {"gsnr": g.norm() / (g.std().nan_to_num() + eps)}
            else:
                states[p] = {"gsnr": torch.tensor(g.numel() ** 0.5)}
        states["max"] = max(states[p]["gsnr"] for p in params) if normalize else 1.0
    for p in params:
        s = states[p]
        if "buf" not in s:
            s["buf"] = p.grad.clone()
        else:
            s["buf"].mul_(momentum).add_(p.grad, alpha=1 - momentum)
        p.mul_(1 - weight_decay * lr).add_(s["buf"], alpha=-(lr * s["gsnr"] / states["max"]).item())


@pytest.mark.parametrize("normalize,estimator", [(True, "gsnr"), (False, "gsnr"), (False, "sqrt_numel")])
def test_matches_official_code_equations(normalize, estimator):
    model = mlp()
    reference = twin(model)
    lr = 0.05 if normalize else 1e-3
    opt = gradkit.optim.SGDSaI(model.parameters(), lr=lr, normalize=normalize, estimator=estimator)
    states: dict = {}

    @torch.no_grad()
    def reference_step():
        official_step(list(reference.parameters()), states, lr, 0.9, 1e-8, 1e-2, normalize, estimator)

    assert side_by_side(model, opt, reference, reference_step, synthetic_batches()) <= 1e-5


def test_pytorch_optimizer_variant_differs_from_official_code():
    # Documented deviation: pytorch_optimizer.SGDSaI starts the momentum at zero and does not normalize
    # the g-SNR, so it cannot serve as the parity reference.
    po = pytest.importorskip("pytorch_optimizer", reason="only documents how pytorch_optimizer.SGDSaI deviates")
    model = mlp()
    reference = twin(model)
    train(model, gradkit.optim.SGDSaI(model.parameters(), lr=1e-3, normalize=False), 3, synthetic_batches())
    train(reference, po.SGDSaI(reference.parameters(), lr=1e-3), 3, synthetic_batches())
    assert max_relative_difference(model, reference) > 1e-4


def test_scales_are_frozen_at_the_first_step():
    model = mlp()
    opt = gradkit.optim.SGDSaI(model.parameters(), lr=0.05)
    batches = synthetic_batches()
    train(model, opt, 1, batches)
    scales = [opt.state[p]["gsnr.scale"].clone() for p in model.parameters()]
    assert max(s.item() for s in scales) == 1.0  # normalized by the largest g-SNR
    train(model, opt, 5, batches[1:])
    assert all(torch.equal(a, opt.state[p]["gsnr.scale"]) for a, p in zip(scales, model.parameters()))


def test_reduces_loss():
    first, last = run_quadratic(lambda p: gradkit.optim.SGDSaI(p, lr=0.005, weight_decay=0.0))
    assert last < 0.1 * first
    model = mlp()
    losses = train(model, gradkit.optim.SGDSaI(model.parameters(), lr=3.0), 40, digits_batches())
    assert losses[-1] < 0.6 * losses[0]


def test_state_is_half_of_adamw():
    model = mlp()
    opt = gradkit.optim.SGDSaI(model.parameters())
    train(model, opt, 1, synthetic_batches(1))
    kinds = opt.state_bytes(by="kind")
    n_tensors = len(list(model.parameters()))
    assert 2 * kinds["moment"] == adamw_moment_bytes(mlp())
    assert kinds["scale"] == 4 * n_tensors  # one fp32 scalar per tensor on top of the momentum


def test_bad_arguments_raise():
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="momentum"):
        gradkit.optim.SGDSaI([w], momentum=1.0)
    with pytest.raises(ValueError, match="estimator"):
        gradkit.optim.SGDSaI([w], estimator="adam")
