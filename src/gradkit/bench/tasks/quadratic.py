"""``quadratic``: an ill-conditioned convex quadratic with a known optimum.

f(x) = 1/2 (x - x*)^T A (x - x*), A = Q diag(lambda) Q^T with eigenvalues log-spaced in
[1/condition, 1] and a fixed rotation Q (so the problem is not axis-aligned and diagonal
preconditioners cannot undo the conditioning exactly). x* = (1, ..., 1), f(x*) = 0.
``noise`` adds sigma * <xi, x> with xi ~ N(0, I) drawn from the batch generator (stochastic gradients).
The metric is the distance to x*. With ``dim=2`` the trajectory is recorded and plotted.
"""
from __future__ import annotations

import math

import torch

from ._toy import Point, grid
from .base import Task
from .registry import register_task


@register_task
class Quadratic(Task):
    name = "quadratic"
    summary = "ill-conditioned rotated quadratic, known optimum (1, ..., 1), distance to optimum"
    metric = "distance"
    higher_is_better = False
    defaults = {"steps": 200, "eval_every": 10, "batch_size": 1, "dim": 2, "condition": 100.0, "noise": 0.0}

    def __init__(self, **options):
        super().__init__(**options)
        dim, cond = self.options["dim"], self.options["condition"]
        if dim < 2:
            raise ValueError(f"task 'quadratic': dim must be >= 2, got {dim}")
        if not cond >= 1.0:
            raise ValueError(f"task 'quadratic': condition must be >= 1, got {cond}")
        if self.options["noise"] < 0:
            raise ValueError(f"task 'quadratic': noise must be >= 0, got {self.options['noise']}")
        self.trajectory = dim == 2
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
        eig = torch.logspace(-math.log10(cond), 0.0, dim, dtype=torch.float64)
        self.hessian = (q * eig) @ q.T
        self.optimum = torch.ones(dim, dtype=torch.float64)
        self.start = torch.tensor([-1.5, -0.5] + [-1.0] * (dim - 2), dtype=torch.float64)

    def _f(self, x: torch.Tensor) -> torch.Tensor:
        d = x - self.optimum.to(x)
        return 0.5 * ((d @ self.hessian.to(x)) * d).sum(-1)

    def load(self, device):
        return torch.device(device)

    def build_model(self):
        return Point(self.start)

    def sample(self, device, generator):
        if self.options["noise"] == 0:
            return None
        return (self.options["noise"] * torch.randn(self.options["dim"], generator=generator)).to(device)

    def losses(self, model, batch):
        x = model()
        loss = self._f(x)
        return loss if batch is None else loss + (batch * x).sum()

    @torch.no_grad()
    def evaluate(self, model, data, split):
        x = model().double()
        return {"loss": float(self._f(x)), "metric": float((x - self.optimum.to(x)).norm())}

    def surface(self):
        if not self.trajectory:
            return None
        lo = float(min(self.start.min(), self.optimum.min())) - 1.0
        hi = float(max(self.start.max(), self.optimum.max())) + 1.0
        return grid(self._f, (lo, hi), (lo, hi), self.optimum.tolist())
