"""What the tests share: small models and data, one training loop, one parameter-gap measure, and the
checks every optimizer test runs (loss decrease, state bytes, bad hyperparameters, staggered steps).

Importable from every test directory as ``support`` (tests/ is on ``sys.path`` through tests/conftest.py).
"""
from __future__ import annotations

import copy
import functools
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import gradkit
from gradkit import datasets, models


# --- models -----------------------------------------------------------------------------------------

def tiny_mlp(seed: int = 0, dtype=torch.float32) -> nn.Module:
    """8 -> 16 -> 3 tanh MLP (the core contract suite's model)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def mlp(seed: int = 0, hidden: int = 32) -> nn.Module:
    """The digits MLP (64 -> hidden -> hidden -> 10, ReLU)."""
    torch.manual_seed(seed)
    return models.digits_mlp(hidden=hidden, depth=2)


def smooth_net(seed: int = 0) -> nn.Module:
    """Linear -> BatchNorm -> tanh -> Linear: the first weight is scale-invariant per output unit, and the
    model has no kinks (ReLU, max-pool), so a last-bit difference cannot flip a branch and two runs of
    one algorithm stay together over hundreds of steps."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32, bias=False), nn.BatchNorm1d(32), nn.Tanh(), nn.Linear(32, 10))


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return models.DigitsCNN(channels=8)


def twin(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


# --- data -------------------------------------------------------------------------------------------

def data(seed: int = 1):
    """64 random 8-dimensional inputs with 3 classes: one full batch for ``tiny_mlp``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)


@functools.lru_cache(maxsize=None)
def _digits(image: bool):
    split = datasets.digits("train", image=image)
    return split.inputs, split.targets


def digits_batch(n: int = 256, image: bool = False):
    """The first ``n`` digits training examples as one batch."""
    x, y = _digits(image)
    return x[:n], y[:n]


def digits_batches(n_batches: int = 8, batch_size: int = 128):
    """``n_batches`` random digits batches, the same on every call."""
    x, y = _digits(False)
    g = torch.Generator().manual_seed(0)
    idx = [torch.randint(0, len(x), (batch_size,), generator=g) for _ in range(n_batches)]
    return [(x[i], y[i]) for i in idx]


def cyclic_batches(x: torch.Tensor, y: torch.Tensor, batch: int = 64) -> Callable[[int], tuple]:
    """Mini-batches of ``(x, y)`` in a fixed cyclic order: step ``t`` reads rows ``t * batch mod n`` onwards."""
    n = x.shape[0]

    def at(step: int):
        start = (step * batch) % n
        return x[start:start + batch], y[start:start + batch]

    return at


def synthetic_batches(n_batches: int = 4, batch_size: int = 32):
    """Random digits-shaped batches (64 inputs, 10 classes): cheap data for the long parity runs."""
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(batch_size, 64, generator=g), torch.randint(0, 10, (batch_size,), generator=g))
            for _ in range(n_batches)]


def digits_loss(model: nn.Module, batch) -> torch.Tensor:
    """Cross-entropy of ``model`` on ``(inputs, targets)``, inputs cast to the model's dtype."""
    x, y = batch
    return F.cross_entropy(model(x.to(next(model.parameters()).dtype)), y)


# --- the training loop and the gap between two models ------------------------------------------------

def train(model: nn.Module, opt: torch.optim.Optimizer, steps: int,
          batches: Sequence | Callable[[int], object] | None = None, *, loss: Callable = digits_loss, start: int = 0,
          scheduler=None, freeze_every: int = 0) -> list[float]:
    """Run ``steps`` optimizer steps and return the loss of each.

    ``batches`` is a list cycled in order, or a function ``step -> batch``; by default one full batch of
    :func:`data`. ``loss(model, batch)`` is cross-entropy by default. Steps are numbered from ``start``
    (to continue a run). With ``freeze_every=k`` the first layer's bias gets no grad on every k-th step.
    """
    if batches is None:
        batches = [data()]
    batch_at = batches if callable(batches) else (lambda t: batches[t % len(batches)])
    losses = []
    for i, t in enumerate(range(start, start + steps)):
        opt.zero_grad(set_to_none=True)
        value = loss(model, batch_at(t))
        value.backward()
        if freeze_every and i % freeze_every == 0:
            model[0].bias.grad = None
        opt.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(value.item())
    return losses


def max_relative_difference(a: nn.Module, b: nn.Module) -> float:
    """max over tensors of max|a - b| / max|b| (b is the reference)."""
    worst = 0.0
    for pa, pb in zip(a.parameters(), b.parameters()):
        worst = max(worst, ((pa - pb).abs().max() / pb.abs().max().clamp_min(1e-30)).item())
    return worst


# --- checks and problems the optimizer tests share ----------------------------------------------

def parity(make_ours, make_reference, model_fn=smooth_net, steps: int = 200, image: bool = False) -> float:
    """Train two copies of one model for ``steps`` steps on the same batches; return the parameter gap."""
    batches = cyclic_batches(*digits_batch(512, image=image))
    ours_model = model_fn()
    ref_model = copy.deepcopy(ours_model)
    train(ours_model, make_ours(ours_model.parameters()), steps, batches)
    train(ref_model, make_reference(ref_model.parameters()), steps, batches)
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
    train(model, make_opt(model.parameters()), steps, cyclic_batches(x, y))
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
    train(model, opt, 2, cyclic_batches(*digits_batch(64)))
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


class Quadratic(torch.nn.Module):
    """0.5 * sum(c * w^2) over a matrix and a vector, curvatures spread over 1..100 (condition 100)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(6, 10, generator=g))
        self.bias = torch.nn.Parameter(torch.randn(10, generator=g))
        self.register_buffer("c_weight", torch.logspace(0, 2, 60).reshape(6, 10))
        self.register_buffer("c_bias", torch.logspace(0, 2, 10))

    def forward(self):
        return 0.5 * ((self.c_weight * self.weight**2).sum() + (self.c_bias * self.bias**2).sum())


def run_quadratic(make_optimizer, steps: int = 60) -> tuple[float, float]:
    model = Quadratic()
    opt = make_optimizer(model.parameters())
    first = model().item()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = model()
        loss.backward()
        opt.step()
    return first, model().item()


def side_by_side(model, optimizer, reference, reference_step, batches, steps: int = 200, loss_scale: float = 1.0):
    """Train ``model`` with ``optimizer`` and its twin ``reference`` with ``reference_step()`` (called after the
    reference's backward, with the reference's gradients in ``.grad``) on the same batches; return the
    largest relative parameter difference at the end."""
    for t in range(steps):
        for m in (model, reference):
            m.zero_grad(set_to_none=True)
            (loss_scale * digits_loss(m, batches[t % len(batches)])).backward()
        optimizer.step()
        reference_step()
    return max_relative_difference(model, reference)


def adamw_moment_bytes(model) -> int:
    opt = gradkit.optim.AdamW(model.parameters())
    train(model, opt, 1, synthetic_batches(1))
    return opt.state_bytes(by="kind")["moment"]
