"""Entropy-SGD: descend the local entropy, estimated by an inner SGLD loop, with any outer optimizer.

Chaudhari, Choromanska, Soatto, LeCun, Baldassi, Borgs, Chayes, Sagun & Zecchina, "Entropy-SGD: Biasing
Gradient Descent Into Wide Valleys", ICLR 2017, arXiv:1611.01838; official code
https://github.com/ucla-vision/entropy-sgd.

One outer step at ``x`` (Algorithm 1), with scope ``gamma`` and ``L`` Langevin iterations::

    x' <- x,  mu <- x
    repeat L times:   dx' = grad f(x'; batch) - gamma (x - x')
                      x'  <- x' - eta' dx' + sqrt(eta') eps N(0, I)
                      mu  <- (1 - alpha) mu + alpha x'
    grad of the local entropy:  g = gamma (x - mu)        (the outer optimizer steps x on g)
    gamma <- gamma (1 + gamma_1)                          (scoping, once per outer step)

The outer step is any optimizer's (a gradkit chain through :class:`gradkit.Optimizer`, ``SGD`` with
Nesterov momentum as the paper's experiments, ...): ``g`` is written into ``.grad`` and its ``step()`` runs.
Each Langevin iteration calls the closure (as ``torch.optim.LBFGS``), which must draw a new batch,
zero the gradients, compute the loss and call ``backward()``.

Deviations, stated: the noise comes from ``generator`` (one ``randn`` per tensor per iteration, so runs
repeat exactly); the official code's extra weight decay and momentum inside the Langevin loop are not
included (the paper's Algorithm 1 has neither).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from gradkit.optim._wrapped import WrappedOptimizer

__all__ = ["EntropySGD"]


class EntropySGD(WrappedOptimizer):
    """Entropy-SGD around an outer optimizer; ``step(closure)`` runs the inner SGLD loop then the outer step.

    Args:
        optimizer: the outer optimizer over the params (any ``torch.optim.Optimizer``; it gets ``g``).
        langevin_steps: ``L`` (>= 1).
        gamma: the initial scope ``gamma_0`` (> 0).
        gamma_growth: ``gamma_1``, the scope's growth per outer step (>= 0).
        inner_lr: ``eta'``, the SGLD step size (> 0).
        noise: ``eps``, the thermal noise (>= 0).
        alpha: the averaging weight of ``mu`` in (0, 1].
        generator: the source of the Langevin noise (default: torch's global one).

    ``g = gamma (x - mu)``, ``mu`` the running average of the SGLD iterates ``x'`` coupled to ``x`` by
    ``gamma``. Reference: Chaudhari et al., ICLR 2017, arXiv:1611.01838.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([2.0]))
        >>> opt = gradkit.optim.EntropySGD(gradkit.optim.SGD([w], lr=1.0), langevin_steps=5, gamma=1.0,
        ...                                inner_lr=0.1, noise=0.0)
        >>> def closure():
        ...     opt.zero_grad(); loss = (w ** 2).sum(); loss.backward(); return loss
        >>> float(opt.step(closure).detach()), round(w.item(), 4)   # loss at the first iterate; w moves towards 0
        (4.0, 0.9279)
    """

    def __init__(self, optimizer: torch.optim.Optimizer, langevin_steps: int = 20, gamma: float = 0.03,
                 gamma_growth: float = 1e-3, inner_lr: float = 0.1, noise: float = 1e-4, alpha: float = 0.75,
                 generator: torch.Generator | None = None):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(langevin_steps, bool) or not isinstance(langevin_steps, int) or langevin_steps < 1:
            raise ValueError(f"langevin_steps must be an int >= 1, got {langevin_steps!r}")
        checks = (("gamma", gamma, lambda x: x > 0, "> 0"), ("gamma_growth", gamma_growth, lambda x: x >= 0, ">= 0"),
                  ("inner_lr", inner_lr, lambda x: x > 0, "> 0"), ("noise", noise, lambda x: x >= 0, ">= 0"),
                  ("alpha", alpha, lambda x: 0 < x <= 1, "in (0, 1]"))
        for name, value, ok, allowed in checks:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
                raise ValueError(f"{name} must be a finite number {allowed}, got {value!r}")
        self.optimizer = optimizer
        self.langevin_steps, self.gamma, self.gamma_growth = langevin_steps, float(gamma), float(gamma_growth)
        self.inner_lr, self.noise, self.alpha, self.generator = float(inner_lr), float(noise), float(alpha), generator

    def step(self, closure: Callable[[], torch.Tensor]):
        """``L`` closure calls at the SGLD iterates, then the outer step on ``gamma (x - mu)``; returns the
        first loss (at ``x``)."""
        if closure is None:
            raise ValueError("closure is required: Entropy-SGD evaluates the loss langevin_steps times per step")
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.requires_grad]
        with torch.no_grad():
            x = [p.detach().clone() for p in params]
            mu = [p.detach().clone() for p in params]
        gamma, sigma, first = self.gamma, math.sqrt(self.inner_lr) * self.noise, None
        for _ in range(self.langevin_steps):
            with torch.enable_grad():
                loss = closure()
            first = loss if first is None else first
            with torch.no_grad():
                live = [i for i, p in enumerate(params) if p.grad is not None]
                xp = [params[i] for i in live]
                # dx' = grad + gamma (x' - x);   x' <- x' - eta' dx' + sqrt(eta') eps N(0, I)
                dx = torch._foreach_sub([p.detach() for p in xp], [x[i] for i in live])
                torch._foreach_mul_(dx, gamma)
                torch._foreach_add_(dx, [p.grad for p in xp])
                torch._foreach_add_(xp, dx, alpha=-self.inner_lr)
                if sigma > 0:
                    noise = [torch.randn(p.shape, generator=self.generator, dtype=p.dtype, device=p.device) for p in xp]
                    torch._foreach_add_(xp, noise, alpha=sigma)
                torch._foreach_lerp_([mu[i] for i in live], [p.detach() for p in xp], self.alpha)
        with torch.no_grad():
            for p, xi, mi in zip(params, x, mu):
                p.copy_(xi)
                p.grad = (xi - mi).mul_(gamma)
        self.optimizer.step()
        self.gamma = gamma * (1.0 + self.gamma_growth)
        return first

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "entropy_sgd": {"gamma": self.gamma}}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.gamma = float(state["entropy_sgd"]["gamma"])
