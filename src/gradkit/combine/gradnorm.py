"""GradNorm: learn loss weights that balance the tasks' gradient norms on a shared layer.

Zhao Chen, Vijay Badrinarayanan, Chen-Yu Lee, Andrew Rabinovich. "GradNorm: Gradient
Normalization for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018,
arXiv:1711.02257. No official code was released.

With task weights ``w_i`` (all 1 at the start), ``L~_i = L_i(t) / L_i(0)`` and the relative
inverse training rate ``r_i = L~_i / mean_j L~_j``, on the chosen shared layer ``W``::

    G_i   = ||grad_W (w_i L_i)|| = w_i ||grad_W L_i||
    L_grad = sum_i | G_i - mean_j(G_j) * r_i^alpha |      (the target is held constant)
    update = sum_i w_i grad L_i                             (what the network steps on)
    w     <- w - lr * dL_grad/dw,  then  w <- T * w / sum(w)   (T = number of tasks)

``dL_grad/dw_i = sign(G_i - target_i) * ||grad_W L_i||`` is written out, so no second backward
pass is needed. The paper does not fix the optimizer of the weights; plain gradient descent with
``lr`` is used here, and weights are kept above ``min_weight`` before the renormalisation
(a guard the paper does not need to state, since its weights never approach zero).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor

from ._base import Aggregator, Context, register_aggregator

__all__ = ["GradNorm"]


@register_aggregator("gradnorm")
class GradNorm(Aggregator):
    """Adaptive loss weights by gradient normalisation (Chen et al., 2018).

    Learns loss weights ``w_i`` so that each weighted gradient norm ``w_i |g_i|`` tracks the mean norm
    times ``(r_i)^alpha``, ``r_i`` the task's relative inverse training rate; the update is ``sum_i w_i g_i``.

    Args:
        num_tasks: number of losses; inferred from the first step when None.
        alpha: asymmetry; larger values pull harder towards tasks that train slowly (paper: 0.12-3).
        lr: learning rate of the weights.
        layer: the shared parameters whose gradient norms are balanced (the paper uses the last
            shared layer); must be among the params of each step. None: all shared params.
        min_weight: lower bound on a weight before renormalisation.

    Needs the loss values: ``combine.backward`` supplies them, ``backward_from_gradients`` takes
    them through ``losses=``.

    Example:
        >>> import torch
        >>> from gradkit.combine import Context, GradNorm
        >>> jac = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
        >>> GradNorm()(jac, Context(jac, losses=torch.tensor([1.0, 2.0])))  # first step: weights 1
        tensor([0., 1.])
    """

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        alpha: float = 1.5,
        lr: float = 0.025,
        layer: Iterable[Tensor] | None = None,
        min_weight: float = 1e-3,
    ):
        if num_tasks is not None and (not isinstance(num_tasks, int) or num_tasks < 1):
            raise ValueError(f"num_tasks must be a positive int or None, got {num_tasks!r}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if not lr >= 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not min_weight > 0:
            raise ValueError(f"min_weight must be > 0, got {min_weight}")
        self.layer = None if layer is None else list(layer)
        if self.layer is not None and (not self.layer or not all(isinstance(p, Tensor) for p in self.layer)):
            raise ValueError("layer must be a non-empty iterable of parameter tensors or None")
        self.alpha = float(alpha)
        self.lr = float(lr)
        self.min_weight = float(min_weight)
        self.loss_weights: Tensor | None = None if num_tasks is None else torch.ones(num_tasks)
        self.initial_losses: Tensor | None = None
        self.steps = 0
        self._last: dict[str, Any] = {}

    def check(self, jacobian: Tensor) -> None:
        super().check(jacobian)
        if self.loss_weights is not None and self.loss_weights.numel() != jacobian.shape[0]:
            raise ValueError(f"GradNorm was set up for {self.loss_weights.numel()} tasks, got {jacobian.shape[0]}")

    def aggregate(self, jacobian: Tensor, context: Context) -> Tensor:
        if context.losses is None:
            raise ValueError("GradNorm needs the loss values: pass losses= to backward_from_gradients")
        losses = context.losses.to(jacobian)
        if not bool((losses > 0).all()):
            raise ValueError(f"GradNorm needs positive losses (it divides by L_i(0)), got {losses.tolist()}")
        layer_jac = jacobian if self.layer is None else jacobian[:, context.columns(self.layer)]
        m = jacobian.shape[0]
        if self.loss_weights is None:
            self.loss_weights = torch.ones(m)
        if self.initial_losses is None:
            self.initial_losses = losses.clone()
        w = self.loss_weights.to(jacobian)
        update = w @ jacobian

        raw_norms = layer_jac.norm(dim=1)
        weighted = w * raw_norms
        ratios = losses / self.initial_losses.to(jacobian)
        target = weighted.mean() * (ratios / ratios.mean()) ** self.alpha
        grad_w = torch.sign(weighted - target) * raw_norms
        new_w = (w - self.lr * grad_w).clamp_min(self.min_weight)
        self.loss_weights = (new_w * (m / new_w.sum())).detach()
        self.steps += 1
        self._last = {
            "loss_weights": w.detach().clone(),
            "layer_grad_norms": weighted.detach(),
            "gradnorm_loss": float((weighted - target).abs().sum()),
        }
        return update

    def diagnostics(self) -> dict[str, Any]:
        return dict(self._last)

    def state_dict(self) -> dict[str, Any]:
        clone = lambda t: None if t is None else t.detach().clone()  # noqa: E731
        return {"loss_weights": clone(self.loss_weights), "initial_losses": clone(self.initial_losses), "steps": self.steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        keys = {"loss_weights", "initial_losses", "steps"}
        if set(state_dict) != keys:
            raise ValueError(f"GradNorm state_dict must have keys {sorted(keys)}, got {sorted(state_dict)}")
        self.loss_weights = None if state_dict["loss_weights"] is None else state_dict["loss_weights"].detach().clone()
        self.initial_losses = None if state_dict["initial_losses"] is None else state_dict["initial_losses"].detach().clone()
        self.steps = int(state_dict["steps"])

    def __repr__(self) -> str:
        return f"GradNorm(alpha={self.alpha}, lr={self.lr})"
