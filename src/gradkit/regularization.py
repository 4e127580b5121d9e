"""Gradient-norm regularization, by finite differences or double backward.

Karakida, Takase, Hayase & Osawa, "Understanding Gradient Regularization in Deep Learning: Efficient
Finite-Difference Computation and Implicit Bias", ICML 2023, arXiv:2302.00669.

Gradient regularization (GR) trains on ``L_R(θ) = L(θ) + (ρ / 2) ||∇L(θ)||²``, whose gradient is

    ∇L_R = ∇L + ρ H ∇L                                            (H: the Hessian of L at θ)

The Hessian-vector product can be taken exactly by double backward (``method="double_backward"``: one
backward through a graph that keeps the first backward), or by a finite difference of gradients along
``∇L`` with step ``ε`` (two plain backward passes, no second-order graph)::

    forward  (F-GR):  H ∇L ≈ (∇L(θ + ε ∇L) - ∇L(θ)) / ε   =>  ∇L_R ≈ (1 - ρ/ε) ∇L(θ) + (ρ/ε) ∇L(θ + ε ∇L)
    backward (B-GR):  H ∇L ≈ (∇L(θ) - ∇L(θ - ε ∇L)) / ε   =>  ∇L_R ≈ (1 + ρ/ε) ∇L(θ) - (ρ/ε) ∇L(θ - ε ∇L)

Both are first-order accurate: their error shrinks linearly in ``ε``. The forward one is an ascent
step followed by a descent step (SAM-like); the paper finds it both cheaper than double backward and
better at generalising than the backward one. ``ε = h`` by default; with ``normalize=True``,
``ε = h / ||∇L(θ)||`` so that the perturbation has length ``h`` (SAM's convention), an option the
paper's experiments also discuss; ``h`` is the step either way.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor

__all__ = ["gradient_norm_regularization", "GR_METHODS"]

GR_METHODS = ("forward", "backward", "double_backward")


def _grads(loss: Tensor, params: list[Tensor], create_graph: bool = False) -> list[Tensor]:
    grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def _check(params, rho, h, method, loss_fn) -> list[Tensor]:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable returning the scalar loss, got {type(loss_fn).__name__}")
    if method not in GR_METHODS:
        raise ValueError(f"method must be one of {GR_METHODS}, got {method!r}")
    for name, value, ok, allowed in (("rho", rho, lambda x: x >= 0, ">= 0"), ("h", h, lambda x: x > 0, "> 0")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise ValueError(f"{name} must be a number {allowed}, got {value!r}")
    params = list(params)
    if not params or not all(isinstance(p, Tensor) and p.requires_grad for p in params):
        raise ValueError("params must be a non-empty iterable of tensors that require grad")
    return params


def gradient_norm_regularization(loss_fn: Callable[[], Tensor], params: Iterable[Tensor], rho: float, h: float = 1e-2,
                                 method: str = "forward", normalize: bool = False) -> Tensor:
    """Set each ``p.grad`` to the gradient of ``L + rho / 2 * ||∇L||²``; return ``L`` at the current params.

    Args:
        loss_fn: computes the scalar loss from the current params (a closure, no ``backward`` inside);
            called twice by the finite-difference methods, once by double backward.
        params: the tensors to differentiate (and, for finite differences, to perturb and restore).
        rho: the regularization strength (>= 0).
        h: the finite-difference step (> 0); unused by ``"double_backward"``.
        method: ``"forward"`` (F-GR, the paper's recommendation), ``"backward"`` (B-GR) or
            ``"double_backward"`` (exact Hessian-vector product).
        normalize: ``ε = h / ||∇L||`` instead of ``ε = h``.

    The params are restored bit for bit after a finite-difference step (saved and copied back, not
    un-perturbed by subtraction). ``.grad`` is overwritten, not accumulated.

    >>> import torch
    >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
    >>> loss = gradient_norm_regularization(lambda: (w ** 2).sum(), [w], rho=0.5, method="double_backward")
    >>> w.grad  # 2w + 0.5 * H (2w) with H = 2I: 4w
    tensor([4., 8.])
    """
    params = _check(params, rho, h, method, loss_fn)
    with torch.enable_grad():
        if method == "double_backward":
            loss = loss_fn()
            grads = _grads(loss, params, create_graph=True)
            penalty = sum((g * g).sum() for g in grads if g.requires_grad)
            total = _grads(loss + 0.5 * rho * penalty, params) if torch.is_tensor(penalty) else [g.detach() for g in grads]
        else:
            loss = loss_fn()
            grads = _grads(loss, params)
            eps = float(h)
            if normalize:
                norm = torch.linalg.vector_norm(torch.stack([n.float() for n in torch._foreach_norm(grads)])).item()
                if norm == 0.0:
                    raise ValueError("normalize=True needs a nonzero gradient, got ||∇L|| = 0")
                eps = eps / norm
            direction = eps if method == "forward" else -eps
            saved = [p.detach().clone() for p in params]
            with torch.no_grad():
                torch._foreach_add_([p.detach() for p in params], grads, alpha=direction)
            try:
                shifted = _grads(loss_fn(), params)
            finally:
                with torch.no_grad():
                    torch._foreach_copy_([p.detach() for p in params], saved)
            ratio = rho / eps
            # forward: (1 - r) g0 + r g+ ; backward: (1 + r) g0 - r g-
            sign = 1.0 if method == "forward" else -1.0
            total = torch._foreach_mul(grads, 1.0 - sign * ratio)
            torch._foreach_add_(total, shifted, alpha=sign * ratio)
    for p, g in zip(params, total):
        p.grad = g.detach()
    return loss.detach()
