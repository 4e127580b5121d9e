"""Shared pieces of the toy problems: a single point as the model, and a contour grid."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class Point(nn.Module):
    """The model of a toy problem is just its coordinates."""

    def __init__(self, start: torch.Tensor):
        super().__init__()
        self.x = nn.Parameter(start.clone().float())

    def forward(self) -> torch.Tensor:
        return self.x


def grid(fn: Callable[[torch.Tensor], torch.Tensor], x_range, y_range, optimum, n: int = 80) -> dict:
    """Loss values on an ``n`` x ``n`` grid, for contour plots: ``z[i][j] = fn((x[j], y[i]))``."""
    xs = torch.linspace(*x_range, n, dtype=torch.float64)
    ys = torch.linspace(*y_range, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    z = fn(torch.stack((xx, yy), dim=-1))
    return {"x": xs.tolist(), "y": ys.tolist(), "z": z.tolist(), "optimum": [float(v) for v in optimum]}
