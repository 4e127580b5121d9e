from __future__ import annotations

import torch


def two_head_problem(seed: int = 0, m: int = 3):
    """A small shared trunk with ``m`` scalar losses that partly conflict."""
    g = torch.Generator().manual_seed(seed)
    trunk = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, m))
    with torch.no_grad():
        for p in trunk.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    x = torch.randn(16, 5, generator=g)
    targets = torch.randn(16, m, generator=g)

    def losses():
        out = trunk(x)
        return [((out[:, i] - targets[:, i]) ** 2).mean() - 0.3 * out[:, (i + 1) % m].mean() for i in range(m)]

    return trunk, losses
