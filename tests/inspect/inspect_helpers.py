from __future__ import annotations

import torch
from torch import nn


def small_mlp(seed: int = 0, hidden: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, hidden), nn.Tanh(), nn.Linear(hidden, 3)).double()


def small_batch(seed: int = 1, n: int = 24):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def exact_hessian(model: nn.Module, loss_fn, inputs, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense Hessian and gradient of the mean loss over all trainable parameters, flattened
    in ``named_parameters`` order (the order HessianOperator uses by default)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    shapes = [p.shape for _, p in model.named_parameters() if p.requires_grad]
    flat = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters() if p.requires_grad])

    def loss_of(vector):
        parts = vector.split([s.numel() for s in shapes])
        params = {n: part.view(s) for n, part, s in zip(names, parts, shapes)}
        return loss_fn(torch.func.functional_call(model, params, (inputs,)), targets)

    hessian = torch.autograd.functional.hessian(loss_of, flat)
    gradient = torch.autograd.functional.jacobian(loss_of, flat)
    return hessian, gradient
