"""MKOR: Kronecker-factored preconditioning whose factor inverses are updated by rank-1 Sherman-Morrison.

Mozaffari, Li, Dehnavi et al., "MKOR: Momentum-Enabled Kronecker-Factor-Based Optimizer Using Rank-1
Updates", NeurIPS 2023, arXiv:2306.01685; official code https://github.com/Mohammad-Mozaffari/mkor.

For each ``nn.Linear`` (weight ``W``: out x in, the bias as an extra input column), with ``a`` the batch
mean of the layer's input and ``g`` the batch mean of the gradient with respect to its output (read by
module hooks, as K-FAC implementations do), every ``inv_freq`` steps the factors take a momentum rank-1
update and their inverses follow by Sherman-Morrison, never inverting a matrix::

    F_t = beta F_{t-1} + (1 - beta) v v^T          (L with v = g, R with v = a; F_0 = I)
    F_t^{-1} = (F_{t-1}^{-1} - (1 - beta) (F_{t-1}^{-1} v)(F_{t-1}^{-1} v)^T / (beta + (1 - beta) v^T F_{t-1}^{-1} v)) / beta

and every step the gradient is preconditioned and rescaled to its own norm (the paper's norm-based
stabiliser) before the wrapped optimizer (SGD, Adam, LAMB, ...) steps on it::

    G <- L^{-1} G R^{-1} * ||G|| / ||L^{-1} G R^{-1}||

Stabilisation and fallback: a factor inverse whose largest entry exceeds ``max_inverse`` or that is not
finite is reset to the identity (that step's preconditioning of the layer then uses the identity, i.e.
the first-order rule); ``second_order = False`` turns preconditioning off for all layers (the paper's
hybrid MKOR-H switches to the first-order rule when the loss stops improving; the switching decision is
left to the caller here). Deviations, stated: ``a`` and ``g`` are plain batch means (no extra scaling by
the batch size, which the rescaling to ``||G||`` cancels); other layer types are left to the wrapped
optimizer unchanged.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from gradkit.optim._wrapped import WrappedOptimizer

__all__ = ["MKOR", "sherman_morrison"]


def sherman_morrison(inverse: torch.Tensor, v: torch.Tensor, beta: float) -> torch.Tensor:
    """``(beta F + (1 - beta) v v^T)^{-1}`` from ``F^{-1}`` (symmetric), in place on ``inverse``.

    >>> import torch
    >>> f_inv = torch.eye(2, dtype=torch.float64); v = torch.tensor([1.0, 2.0], dtype=torch.float64)
    >>> exact = torch.linalg.inv(0.9 * torch.eye(2, dtype=torch.float64) + 0.1 * torch.outer(v, v))
    >>> torch.allclose(sherman_morrison(f_inv, v, 0.9), exact)
    True
    """
    u = inverse @ v
    denom = beta + (1.0 - beta) * torch.dot(v, u)
    inverse.sub_(torch.outer(u, u), alpha=(1.0 - beta) / float(denom)).div_(beta)
    return inverse


class MKOR(WrappedOptimizer):
    """Precondition the ``nn.Linear`` gradients of ``model`` with MKOR, then run ``optimizer``.

    Args:
        model: the module whose ``nn.Linear`` layers are preconditioned (hooks are registered on them).
        optimizer: the first-order rule stepping on the preconditioned gradients.
        beta: the factors' momentum in (0, 1).
        inv_freq: steps between rank-1 factor updates (>= 1).
        max_inverse: a factor inverse with a larger entry is reset to the identity (> 0).

    ``F^{-1} <- SM(F^{-1}, v, beta)``; ``G <- L^{-1} G R^{-1}``, rescaled to ``||G||``. Reference:
    Mozaffari et al., NeurIPS 2023, arXiv:2306.01685.

    Example:
        >>> import torch, gradkit
        >>> _ = torch.manual_seed(0); net = torch.nn.Linear(3, 2)
        >>> opt = gradkit.optim.MKOR(net, gradkit.optim.SGD(net.parameters(), lr=0.1))
        >>> loss = net(torch.randn(8, 3)).pow(2).mean(); loss.backward(); opt.step()
        >>> [tuple(f.shape) for f in opt.inverses(net)]    # L^{-1} (out x out), R^{-1} (in + 1 x in + 1)
        [(2, 2), (4, 4)]
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, beta: float = 0.9, inv_freq: int = 10,
                 max_inverse: float = 1e6):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < 1:
            raise ValueError(f"beta must be a number in (0, 1), got {beta!r}")
        if isinstance(inv_freq, bool) or not isinstance(inv_freq, int) or inv_freq < 1:
            raise ValueError(f"inv_freq must be an int >= 1, got {inv_freq!r}")
        if isinstance(max_inverse, bool) or not isinstance(max_inverse, (int, float)) or not max_inverse > 0:
            raise ValueError(f"max_inverse must be a number > 0, got {max_inverse!r}")
        self.optimizer, self.beta, self.inv_freq, self.max_inverse = optimizer, float(beta), inv_freq, float(max_inverse)
        self.second_order = True
        self.steps = 0
        self.resets = 0
        self._layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not self._layers:
            raise ValueError("model has no nn.Linear layer to precondition")
        self._stats: dict[nn.Module, dict[str, Any]] = {}
        self._handles = []
        for m in self._layers:
            w = m.weight
            out_dim, in_dim = w.shape[0], w.shape[1] + (m.bias is not None)
            eye = lambda n: torch.eye(n, dtype=torch.float32, device=w.device)  # noqa: E731
            self._stats[m] = {"L_inv": eye(out_dim), "R_inv": eye(in_dim), "a": None, "g": None}
            self._handles.append(m.register_forward_hook(self._save_input))

    # -- hooks ------------------------------------------------------------------------------------
    def _save_input(self, module, inputs, output):
        if not torch.is_grad_enabled():
            return
        a = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float().mean(0)
        if module.bias is not None:
            a = torch.cat([a, a.new_ones(1)])
        self._stats[module]["a"] = a
        if output.requires_grad:  # dL/d(output) arrives through a hook on the output tensor
            output.register_hook(lambda g, m=module: self._save_grad_output(m, g))

    def _save_grad_output(self, module, g):
        self._stats[module]["g"] = g.detach().reshape(-1, g.shape[-1]).float().mean(0)

    # -- public ----------------------------------------------------------------------------------
    def inverses(self, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L^{-1}, R^{-1})`` of one ``nn.Linear`` layer."""
        s = self._stats[module]
        return s["L_inv"], s["R_inv"]

    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update the factor inverses (every ``inv_freq`` steps), precondition, then the wrapped step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.second_order:
            refresh = self.steps % self.inv_freq == 0
            for m in self._layers:
                self._precondition(m, refresh)
        self.optimizer.step()
        self.steps += 1
        return loss

    def _precondition(self, m: nn.Module, refresh: bool) -> None:
        s = self._stats[m]
        if m.weight.grad is None:
            return
        if refresh and s["a"] is not None and s["g"] is not None:
            for key, v in (("L_inv", s["g"]), ("R_inv", s["a"])):
                inv = sherman_morrison(s[key], v, self.beta)
                if not bool(torch.isfinite(inv).all()) or float(inv.abs().max()) > self.max_inverse:
                    s[key] = torch.eye(inv.shape[0], dtype=inv.dtype, device=inv.device)
                    self.resets += 1
        grad = m.weight.grad.float()
        if m.bias is not None:
            grad = torch.cat([grad, m.bias.grad.float().unsqueeze(1)], 1) if m.bias.grad is not None else \
                torch.cat([grad, grad.new_zeros(grad.shape[0], 1)], 1)
        pre = s["L_inv"] @ grad @ s["R_inv"]
        norm_pre = torch.linalg.matrix_norm(pre)
        if not bool(torch.isfinite(pre).all()) or float(norm_pre) == 0.0:
            return  # fallback: the first-order rule on the raw gradient
        pre.mul_(torch.linalg.matrix_norm(grad) / norm_pre)
        m.weight.grad.copy_(pre[:, : m.weight.shape[1]])
        if m.bias is not None and m.bias.grad is not None:
            m.bias.grad.copy_(pre[:, -1])

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(),
                "mkor": {"steps": self.steps, "second_order": self.second_order,
                         "inverses": [(self._stats[m]["L_inv"].clone(), self._stats[m]["R_inv"].clone())
                                      for m in self._layers]}}

    def load_state_dict(self, state: dict) -> None:
        mkor = state["mkor"]
        if len(mkor["inverses"]) != len(self._layers):
            raise ValueError(f"state has {len(mkor['inverses'])} layers, this model {len(self._layers)}")
        for m, (l_inv, r_inv) in zip(self._layers, mkor["inverses"]):
            if l_inv.shape != self._stats[m]["L_inv"].shape or r_inv.shape != self._stats[m]["R_inv"].shape:
                raise ValueError("factor shapes in the state do not match the model's layers")
        self.optimizer.load_state_dict(state["optimizer"])
        for m, (l_inv, r_inv) in zip(self._layers, mkor["inverses"]):
            self._stats[m]["L_inv"], self._stats[m]["R_inv"] = l_inv.clone(), r_inv.clone()
        self.steps, self.second_order = int(mkor["steps"]), bool(mkor["second_order"])
