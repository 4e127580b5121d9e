"""Imported once by the harness's fork server, before it forks any rank.

Everything here is a one-time cost a fresh process pays on first use (imports; the first
``torch.func`` transform and the first double backward each take about a second): paid once in
the fork server, every rank inherits it.
"""
import torch

torch.set_num_threads(1)

import torch.distributed  # noqa: E402,F401
import torch.distributed.fsdp  # noqa: E402,F401

import gradkit  # noqa: E402,F401
import gradkit.combine  # noqa: E402,F401
import gradkit.inspect  # noqa: E402,F401
import gradkit.lowrank  # noqa: E402,F401
import gradkit.optim  # noqa: E402,F401


def _warm_up() -> None:
    layer = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh())
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    loss = torch.nn.functional.cross_entropy(layer(x), y)
    grads = torch.autograd.grad(loss, list(layer.parameters()), create_graph=True)
    torch.autograd.grad(grads, list(layer.parameters()), grad_outputs=[torch.ones_like(g) for g in grads])
    torch.func.vmap(torch.func.grad(lambda w, row: (w * row).sum().tanh()), in_dims=(None, 0))(torch.ones(3), x)


_warm_up()
