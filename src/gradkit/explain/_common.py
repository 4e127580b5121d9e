"""Shared plumbing of the attribution methods: argument checks, targets and target scores.

Every method takes ``model`` (a module or any callable mapping a batch to ``(N, classes)``
scores, or to ``(N,)`` scores), ``inputs`` of shape ``(N, ...)`` and ``target``:

* ``None``: the class the model predicts for each input (computed once, on the clean inputs);
* an ``int``: the same class for every input;
* a sequence or 1-D integer tensor of length ``N``: one class per input.

Attribution methods never change the model's mode; call ``model.eval()`` first when it has
batch norm or dropout, or the batch statistics of the path points leak between samples.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import torch

Target = Union[None, int, Sequence[int], torch.Tensor]
Model = Callable[[torch.Tensor], torch.Tensor]


def check_inputs(inputs: torch.Tensor) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor of shape (N, ...), got {type(inputs).__name__}")
    if inputs.dim() < 2:
        raise ValueError(f"inputs must have a batch dimension and at least one feature dimension, got shape {tuple(inputs.shape)}")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be a floating-point tensor, got dtype {inputs.dtype}")
    return inputs.detach()


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_nonnegative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def select(output: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """The score of ``target`` in each row of ``output`` (``(N,)`` outputs are scores already)."""
    if output.dim() == 1 or (output.dim() == 2 and output.shape[1] == 1 and target is None):
        return output.reshape(-1)
    if output.dim() != 2:
        raise ValueError(f"the model must return (N, classes) or (N,) scores, got shape {tuple(output.shape)}")
    if target is None:
        raise ValueError("target is required when the model returns (N, classes) scores")
    check_target_range(target, output.shape[1])
    return output.gather(1, target.view(-1, 1)).squeeze(1)


def check_target_range(target: torch.Tensor, classes: int) -> None:
    """A ValueError naming ``target`` when a class index is outside ``[0, classes)``."""
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= classes):
        raise ValueError(f"target must hold class indices in [0, {classes}), got values from {int(target.min())} "
                         f"to {int(target.max())}")


def resolve_target(model: Model, inputs: torch.Tensor, target: Target) -> torch.Tensor | None:
    """``target`` as a ``(N,)`` long tensor on the inputs' device (``None`` only for scalar models)."""
    n = inputs.shape[0]
    if target is None:
        with torch.no_grad():
            out = model(inputs)
        if out.dim() == 1 or (out.dim() == 2 and out.shape[1] == 1):
            return None
        return out.argmax(dim=1)
    if isinstance(target, bool):
        raise TypeError(f"target must be None, an int, or a sequence/tensor of N ints, got {target!r}")
    if isinstance(target, int):
        return torch.full((n,), target, dtype=torch.long, device=inputs.device)
    t = torch.as_tensor(target, device=inputs.device)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"target must hold integers, got dtype {t.dtype}")
    t = t.reshape(-1).long()
    if t.numel() == 1:
        return t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(f"target must have one entry per input ({n}), got {t.numel()}")
    return t


def repeat_target(target: torch.Tensor | None, times: int, interleave: bool) -> torch.Tensor | None:
    """The target of inputs repeated ``times``: step-major (``interleave=False``) or sample-major."""
    if target is None:
        return None
    return target.repeat_interleave(times) if interleave else target.repeat(times)


def target_scores(model: Model, inputs: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    return select(model(inputs), target)


def input_gradient(
    model: Model,
    points: torch.Tensor,
    target: torch.Tensor | None,
    weights: torch.Tensor | None = None,
    create_graph: bool = False,
) -> torch.Tensor:
    """d(target score)/d(points), each row scaled by ``weights`` (one backward pass for the batch).

    Scaling through ``grad_outputs`` rather than after the backward pass saves a full pass over
    the gradients, which is where the quadrature weights of path methods go.
    """
    points = points.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = target_scores(model, points, target)
        if weights is None:
            weights = torch.ones_like(scores)
        (grad,) = torch.autograd.grad(scores, points, grad_outputs=weights.to(scores.dtype), create_graph=create_graph)
    return grad


def as_baseline(baselines, inputs: torch.Tensor, name: str = "baselines") -> torch.Tensor:
    """A baseline tensor broadcastable to ``inputs``: a number, ``(...)``, ``(1, ...)`` or ``(N, ...)``."""
    if baselines is None:
        return torch.zeros((1,) + tuple(inputs.shape[1:]), dtype=inputs.dtype, device=inputs.device)
    if isinstance(baselines, bool):
        raise TypeError(f"{name} must be None, a number or a tensor broadcastable to the inputs, got {baselines!r}")
    if isinstance(baselines, (int, float)):
        return torch.full((1,) + tuple(inputs.shape[1:]), float(baselines), dtype=inputs.dtype, device=inputs.device)
    if not isinstance(baselines, torch.Tensor):
        raise TypeError(f"{name} must be None, a number or a tensor broadcastable to the inputs, got {type(baselines).__name__}")
    b = baselines.detach().to(dtype=inputs.dtype, device=inputs.device)
    if b.dim() == inputs.dim() - 1:
        b = b.unsqueeze(0)
    if b.dim() != inputs.dim() or b.shape[0] not in (1, inputs.shape[0]):
        raise ValueError(f"{name} must have shape (...), (1, ...) or (N, ...) matching inputs {tuple(inputs.shape)}, got {tuple(baselines.shape)}")
    try:
        torch.broadcast_shapes(b.shape, inputs.shape)
    except RuntimeError:
        raise ValueError(f"{name} of shape {tuple(baselines.shape)} does not broadcast to inputs {tuple(inputs.shape)}") from None
    return b


def check_choice(name: str, value, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return value
