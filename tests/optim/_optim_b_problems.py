"""Small shared problems for the optimizer tests of this directory (data and models, no assertions)."""
from __future__ import annotations

import copy

import torch

import gradkit
from gradkit.datasets import digits
from gradkit.models import digits_mlp

from _optim_a_support import max_relative_difference  # noqa: F401  (re-exported for this directory's tests)

_DIGITS = {}


def digits_batches(n_batches: int = 8, batch_size: int = 128):
    if "train" not in _DIGITS:
        _DIGITS["train"] = digits("train")
    data = _DIGITS["train"]
    g = torch.Generator().manual_seed(0)
    idx = [torch.randint(0, len(data), (batch_size,), generator=g) for _ in range(n_batches)]
    return [(data.inputs[i], data.targets[i]) for i in idx]


def synthetic_batches(n_batches: int = 4, batch_size: int = 32):
    """Random digits-shaped batches (64 inputs, 10 classes): cheap data for the long parity runs."""
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(batch_size, 64, generator=g), torch.randint(0, 10, (batch_size,), generator=g))
            for _ in range(n_batches)]


def mlp(seed: int = 0, hidden: int = 32) -> torch.nn.Module:
    torch.manual_seed(seed)
    return digits_mlp(hidden=hidden)


def digits_loss(model, batch):
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


def train(model, optimizer, steps: int, batches=None) -> list[float]:
    """Plain training loop over a fixed list of batches; returns the losses."""
    batches = batches or digits_batches()
    losses = []
    for t in range(steps):
        batch = batches[t % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        loss = digits_loss(model, batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


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


def twin(model):
    return copy.deepcopy(model)


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
