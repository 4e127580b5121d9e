"""Shared pieces of the optimizer tests: a fixed model and data, a parity runner, loss-decrease tasks."""
from __future__ import annotations

import copy
import functools
import math

import torch
import torch.nn.functional as F

from gradkit import datasets, models


@functools.lru_cache(maxsize=None)
def _digits(image: bool):
    split = datasets.digits("train", image=image)
    return split.inputs, split.targets


def digits_batch(n: int = 256, image: bool = False):
    x, y = _digits(image)
    return x[:n], y[:n]


def mlp(seed: int = 0, hidden: int = 32) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.digits_mlp(hidden=hidden, depth=2)


def smooth_net(seed: int = 0) -> torch.nn.Module:
    """Linear -> BatchNorm -> tanh -> Linear: the first weight is scale-invariant per output unit, and the
    model has no kinks (ReLU, max-pool), so a last-bit difference cannot flip a branch and two runs of
    one algorithm stay together over hundreds of steps."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 32, bias=False), torch.nn.BatchNorm1d(32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 10))


def cnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.DigitsCNN(channels=8)


def train(model, opt, x, y, steps: int, batch: int = 64) -> list[float]:
    """Mini-batches in a fixed cyclic order; returns the loss of every step."""
    losses = []
    n = x.shape[0]
    for step in range(steps):
        start = (step * batch) % n
        xb, yb = x[start:start + batch], y[start:start + batch]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def max_relative_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """max over tensors of max|a - b| / max|b| (b is the reference)."""
    worst = 0.0
    for pa, pb in zip(a.parameters(), b.parameters()):
        worst = max(worst, ((pa - pb).abs().max() / pb.abs().max().clamp_min(1e-30)).item())
    return worst


def parity(make_ours, make_reference, model_fn=smooth_net, steps: int = 200, image: bool = False) -> float:
    """Train two copies of one model for ``steps`` steps on the same batches; return the parameter gap."""
    x, y = digits_batch(512, image=image)
    ours_model = model_fn()
    ref_model = copy.deepcopy(ours_model)
    train(ours_model, make_ours(ours_model.parameters()), x, y, steps)
    train(ref_model, make_reference(ref_model.parameters()), x, y, steps)
    return max_relative_difference(ours_model, ref_model)


def ill_conditioned_quadratic(make_opt, steps: int = 100, condition: float = 100.0) -> tuple[float, float]:
    """f(w) = 0.5 sum_i c_i w_i^2 with c spread over [1, condition]; returns (initial, final) loss."""
    torch.manual_seed(0)
    coeffs = torch.logspace(0, math.log10(condition), 20)
    w = torch.nn.Parameter(torch.randn(20))
    opt = make_opt([w])

    def loss_fn():
        return 0.5 * (coeffs * w * w).sum()

    initial = loss_fn().item()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    return initial, loss_fn().item()


def digits_mlp_losses(make_opt, steps: int = 40) -> tuple[float, float]:
    """Full-batch loss of a small MLP on digits before and after ``steps`` mini-batch steps."""
    x, y = digits_batch(512)
    model = mlp(1)
    with torch.no_grad():
        before = F.cross_entropy(model(x), y).item()
    train(model, make_opt(model.parameters()), x, y, steps)
    with torch.no_grad():
        after = F.cross_entropy(model(x), y).item()
    return before, after


def state_tensor_bytes(opt) -> int:
    return sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v))


def moment_bytes(opt) -> int:
    """State bytes without the per-parameter step counters."""
    return sum(v.numel() * v.element_size() for s in opt.state.values() for k, v in s.items()
               if torch.is_tensor(v) and k != "step")


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def check_reduces_losses(make_quadratic_opt, make_mlp_opt, quadratic_ratio: float = 0.1, mlp_ratio: float = 0.6):
    """The optimizer shrinks an ill-conditioned quadratic and the digits MLP's loss by the given ratios."""
    initial, final = ill_conditioned_quadratic(make_quadratic_opt)
    assert math.isfinite(final) and final < quadratic_ratio * initial, (initial, final)
    before, after = digits_mlp_losses(make_mlp_opt)
    assert math.isfinite(after) and after < mlp_ratio * before, (before, after)


def check_state_bytes(make_opt, tensors_per_param: int) -> None:
    """``state_bytes()`` is the sum of the state tensors, and the moments take ``tensors_per_param`` fp32
    values per parameter (the per-parameter step counters are plain ints: no tensor bytes)."""
    model = smooth_net()
    opt = make_opt(model.parameters())
    x, y = digits_batch(64)
    train(model, opt, x, y, 2)
    assert opt.state_bytes() == state_tensor_bytes(opt)
    assert moment_bytes(opt) == tensors_per_param * 4 * n_params(model)
    kinds = opt.state_bytes(by="kind")
    assert "step" not in kinds and all(isinstance(s["step"], int) for s in opt.state.values())
    assert sum(kinds.values()) == opt.state_bytes()


def check_rejects(make_opt, **bad) -> None:
    """Construction with a bad hyperparameter raises ValueError naming it; a bad param group added later
    leaves the optimizer unchanged."""
    import pytest

    (name, value), = bad.items()
    w = torch.nn.Parameter(torch.randn(4, 3))
    with pytest.raises(ValueError, match=name):
        make_opt([w], **bad)
    opt = make_opt([w])
    extra = torch.nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match=name):
        opt.add_param_group({"params": [extra], name: value})
    assert len(opt.param_groups) == 1


def check_staggered_steps(make_opt, steps: int = 9, lag: int = 3) -> None:
    """A tensor that starts receiving gradients late keeps its own step count: optimizing two tensors
    together equals optimizing each alone (this runs the per-tensor step paths of the transforms)."""
    torch.manual_seed(0)
    a0, b0 = torch.randn(4, 3), torch.randn(5, 2)
    grads_a = [torch.randn(4, 3) for _ in range(steps)]
    grads_b = [torch.randn(5, 2) for _ in range(steps)]
    a, b = torch.nn.Parameter(a0.clone()), torch.nn.Parameter(b0.clone())
    a_alone, b_alone = torch.nn.Parameter(a0.clone()), torch.nn.Parameter(b0.clone())
    together, opt_a, opt_b = make_opt([a, b]), make_opt([a_alone]), make_opt([b_alone])
    for t in range(steps):
        a.grad, a_alone.grad = grads_a[t].clone(), grads_a[t].clone()
        b.grad = grads_b[t].clone() if t >= lag else None
        together.step()
        opt_a.step()
        if t >= lag:
            b_alone.grad = grads_b[t].clone()
            opt_b.step()
    torch.testing.assert_close(a.detach(), a_alone.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.detach(), b_alone.detach(), rtol=1e-5, atol=1e-6)
    assert not torch.equal(b.detach(), b0)
