"""``rosenbrock``: the Rosenbrock valley, f(x, y) = (a - x)^2 + b (y - x^2)^2, from (-1.2, 1).

Reference: H. H. Rosenbrock, "An automatic method for finding the greatest or least value of a
function", The Computer Journal 3(3), 1960. The optimum is (a, a^2) with f = 0; the metric is the
distance to it. The trajectory is recorded and plotted.
"""
from __future__ import annotations

import torch

from ._toy import Point, grid
from .base import Task
from .registry import register_task


@register_task
class Rosenbrock(Task):
    name = "rosenbrock"
    summary = "2-D Rosenbrock valley from (-1.2, 1), known optimum (a, a^2), distance to optimum"
    metric = "distance"
    higher_is_better = False
    trajectory = True
    defaults = {"steps": 500, "eval_every": 25, "batch_size": 1, "a": 1.0, "b": 100.0}

    def _f(self, p: torch.Tensor) -> torch.Tensor:
        a, b = self.options["a"], self.options["b"]
        x, y = p[..., 0], p[..., 1]
        return (a - x) ** 2 + b * (y - x**2) ** 2

    @property
    def optimum(self) -> torch.Tensor:
        a = self.options["a"]
        return torch.tensor([a, a * a], dtype=torch.float64)

    def load(self, device):
        return torch.device(device)

    def build_model(self):
        return Point(torch.tensor([-1.2, 1.0]))

    def sample(self, device, generator):
        return None

    def losses(self, model, batch):
        return self._f(model())

    @torch.no_grad()
    def evaluate(self, model, data, split):
        p = model().double()
        return {"loss": float(self._f(p)), "metric": float((p - self.optimum.to(p)).norm())}

    def surface(self):
        a = self.options["a"]
        return grid(self._f, (-2.0, max(2.0, a + 1.0)), (-1.0, max(3.0, a * a + 1.0)), self.optimum.tolist())
