"""Shared fixtures for optimizer tests: a tiny MLP, fixed data, a training loop, a relative error."""
from __future__ import annotations

import torch
from torch import nn


def tiny_mlp(seed: int = 0, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def data(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, *, scheduler=None, freeze_every: int = 0) -> list[float]:
    """Full-batch steps; with ``freeze_every=k`` the first layer's bias gets no grad on every k-th step."""
    x, y = data()
    losses = []
    for i in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x.to(next(model.parameters()).dtype)), y)
        loss.backward()
        if freeze_every and i % freeze_every == 0:
            model[0].bias.grad = None
        opt.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return losses


def max_rel_error(a: nn.Module, b: nn.Module) -> float:
    """max over tensors of max|a - b| / max|b|."""
    return max(((pa - pb).abs().max() / pb.abs().max()).item() for pa, pb in zip(a.parameters(), b.parameters()))
