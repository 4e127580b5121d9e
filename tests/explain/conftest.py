from __future__ import annotations

import pytest
import torch
from torch import nn


class SmallCNN(nn.Module):
    """Conv with bias, batch norm, ReLU, max-pool and a linear head: every layer kind the methods meet."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.head(x.flatten(1))


def _randomise_bn(model: nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen, dtype=m.running_mean.dtype) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen, dtype=m.running_var.dtype) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen, dtype=m.weight.dtype) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen, dtype=m.bias.dtype) * 0.1)


@pytest.fixture
def cnn64():
    torch.manual_seed(0)
    model = SmallCNN().double()
    with torch.no_grad():
        _randomise_bn(model, torch.Generator().manual_seed(1))
    return model.eval()


@pytest.fixture
def images64():
    return torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


@pytest.fixture
def mlp64():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).double().eval()


@pytest.fixture
def vectors64():
    return torch.randn(4, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


@pytest.fixture(scope="session")
def trained_cnn():
    from gradkit.explain.cli import train_digits_cnn

    return train_digits_cnn(epochs=4, seed=0)


def _max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest elementwise |a - b| / |b|; |b| is floored at 1e-6 of the largest |b| so exact zeros compare."""
    scale = b.abs().max().clamp_min(1e-300)
    return ((a - b).abs() / b.abs().clamp_min(1e-6 * scale)).max().item()


@pytest.fixture
def max_rel_diff():
    return _max_rel_diff
