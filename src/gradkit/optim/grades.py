"""GradES: freeze each weight matrix once its gradient has converged (gradient-based early stopping).

Wen, Zeng, Zhou, Liu, Hosseinzadeh & Rawassizadeh, "GradES: Significantly Faster Training in Transformers
with Gradient-Based Early Stopping", 2025, arXiv:2509.01842 (no official package on the registry). Instead of
stopping all training on the validation loss, each matrix (attention projections, feed-forward matrices) is
excluded from further updates once the element-wise L1 norm of its gradient falls below a threshold ``tau``;
slowly converging matrices keep learning. The paper fine-tunes pretrained models.

Per tracked matrix ``W`` after every step ``t > grace``::

    G_t(W) = ||grad W||_1 / numel(W)                  (mean absolute gradient)
    below_t = below_{t-1} + 1 if G_t(W) < tau else 0
    freeze W when below_t >= patience

A frozen matrix gets ``requires_grad = False`` (backward no longer computes its weight gradient), its
``.grad`` is dropped and its optimizer state is deleted (``state_bytes`` falls accordingly): the optimizer
skips a parameter without a gradient, so it is never updated again.

Deviations, stated: ``G`` is normalised by the number of elements so that one ``tau`` serves matrices of
different sizes; the grace period is a step count (``grace``) and ``patience`` consecutive steps below
``tau`` are required (``patience=1`` freezes at the first one).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from gradkit.optim._wrapped import WrappedOptimizer

__all__ = ["GradES"]


class GradES(WrappedOptimizer):
    """Wrap any ``torch.optim.Optimizer``: after each ``step``, freeze the matrices whose gradient converged.

    Args:
        optimizer: the optimizer to wrap (a gradkit or torch.optim one).
        tau: threshold on the mean absolute gradient of a matrix (> 0).
        grace: steps before any matrix may freeze (>= 0).
        patience: consecutive steps below ``tau`` needed to freeze (>= 1).
        params: the tensors to track (default: every parameter of ``optimizer`` with ``dim() >= 2``).

    ``G(W) = ||dL/dW||_1 / numel(W)``; freeze once ``G < tau`` for ``patience`` steps after ``grace``.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.ones(2, 2))
        >>> opt = gradkit.optim.GradES(gradkit.optim.SGD([w], lr=0.1), tau=1e-3)
        >>> w.grad = torch.full((2, 2), 1e-4); opt.step()   # updated once, then frozen
        >>> w.requires_grad, w.grad, len(opt.optimizer.state), opt.frozen_count
        (False, None, 0, 1)
    """

    def __init__(self, optimizer: torch.optim.Optimizer, tau: float, grace: int = 0, patience: int = 1,
                 params: Iterable[torch.Tensor] | None = None):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
            raise ValueError(f"tau must be a number > 0, got {tau!r}")
        for name, value, low in (("grace", grace, 0), ("patience", patience, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        owned = [p for g in optimizer.param_groups for p in g["params"]]
        if params is None:
            tracked = [p for p in owned if p.dim() >= 2]
        else:
            tracked = list(params)
            known = {id(p) for p in owned}
            for i, p in enumerate(tracked):
                if id(p) not in known:
                    raise ValueError(f"params[{i}] is not a parameter of the optimizer")
        self.optimizer = optimizer
        self.tau, self.grace, self.patience = float(tau), grace, patience
        self._tracked = tracked
        self._index = {id(p): i for i, p in enumerate(owned)}
        self._below = [0] * len(tracked)
        self._active = list(range(len(tracked)))
        self.steps = 0
        self.frozen_at: dict[int, int] = {}  # index in the optimizer's param order -> step it froze after

    @property
    def frozen_count(self) -> int:
        return len(self.frozen_at)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """The wrapped optimizer's step, then the convergence check of every matrix still training."""
        loss = self.optimizer.step(closure)
        self.steps += 1
        if self.steps <= self.grace or not self._active:
            return loss
        live = [i for i in self._active if self._tracked[i].grad is not None]
        if not live:
            return loss
        grads = [self._tracked[i].grad for i in live]
        norms = torch.stack(torch._foreach_norm(grads, 1)).double().cpu()  # one host sync per step
        sizes = torch.tensor([g.numel() for g in grads], dtype=torch.float64)
        for i, below in zip(live, (norms / sizes < self.tau).tolist()):
            self._below[i] = self._below[i] + 1 if below else 0
            if self._below[i] >= self.patience:
                self._freeze(i)
        return loss

    def _freeze(self, i: int) -> None:
        p = self._tracked[i]
        p.grad = None
        p.requires_grad_(False)
        self.optimizer.state.pop(p, None)
        self._active.remove(i)
        self.frozen_at[self._index[id(p)]] = self.steps

    def state_dict(self) -> dict:
        """The wrapped optimizer's state_dict plus the freezing counters."""
        return {"optimizer": self.optimizer.state_dict(),
                "grades": {"steps": self.steps, "frozen_at": dict(self.frozen_at),
                           "below": {self._index[id(p)]: b for p, b in zip(self._tracked, self._below)}}}

    def load_state_dict(self, state: dict) -> None:
        """Restore both, re-freezing the matrices that were frozen (the optimizer's state first)."""
        grades = state["grades"]
        by_index = {self._index[id(p)]: i for i, p in enumerate(self._tracked)}
        unknown = [k for k in grades["frozen_at"] if k not in by_index]
        if unknown:
            raise ValueError(f"frozen parameter index {unknown[0]} is not a tracked parameter")
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = grades["steps"]
        for k, b in grades["below"].items():
            if k in by_index:
                self._below[by_index[k]] = b
        for k in grades["frozen_at"]:
            if by_index[k] in self._active:
                self._freeze(by_index[k])
        self.frozen_at = dict(grades["frozen_at"])

    def __repr__(self):
        return (f"GradES({self.optimizer.__class__.__name__}, tau={self.tau}, grace={self.grace}, "
                f"patience={self.patience}, frozen={self.frozen_count}/{len(self._tracked)})")
