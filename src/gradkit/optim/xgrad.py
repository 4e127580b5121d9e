"""XGrad: compute the gradient at the weights the optimizer is about to reach.

Guan, Li, Shi & Meng, "XGrad: Boosting Gradient-Based Optimizers With Weight Prediction", IEEE TPAMI
2024, arXiv:2305.18240; code announced at https://github.com/guanleics/XGrad (not available to check against:
this follows the paper's equations).

Before the forward/backward pass of iteration ``t``, the weights are moved ``s`` steps ahead along the
update the optimizer's *current* state gives (no gradient of iteration ``t`` is needed)::

    theta_hat = theta_t - s * lr * delta_t
    SGD with momentum:   delta_t = v_t                                      (the momentum buffer)
    Adam:                delta_t = m_t / (1 - b1^t) / (sqrt(v_t / (1 - b2^t)) + eps)   (v_t -> max with amsgrad)
    AdamW:               delta_t = (Adam's) + wd * theta_t

The gradient is computed at ``theta_hat``, then the real weights ``theta_t`` are restored (bit for bit)
and the optimizer steps from them with that gradient::

    with predicted_weights(opt, steps=1):
        loss_fn(model(x), y).backward()
    opt.step()

``delta_t`` is not written here: it is what the optimizer's own transforms predict
(``predict`` of ``scale_by_adam`` and ``trace``, then the chain's weight decay and learning rate;
:mod:`gradkit.core.prediction`), so every gradkit optimizer whose chain can predict works, and the
others raise ``TypeError`` naming the transform. torch.optim's SGD, Adam and AdamW are predicted by
the matching gradkit recipes reading their state; :func:`register_prediction` adds other optimizer
classes. Parameters without state yet are not moved. SGD needs ``momentum > 0`` and no Nesterov (the
paper's SGDM rule).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from gradkit.core.optimizer import Optimizer
from gradkit.core.prediction import predicted_offsets, shifted_params
from gradkit.core.transform import Chain
from gradkit.optim.adam import adam_chain
from gradkit.optim.sgd import sgd_chain

__all__ = ["predicted_weights", "predicted_update", "register_prediction"]

# function(optimizer, steps) -> (params, offsets); the predicted weights are params + offsets
Prediction = Callable[[torch.optim.Optimizer, float], tuple[list[Tensor], list[Tensor]]]
_PREDICTIONS: dict[type, Prediction] = {}


def register_prediction(cls: type, fn: Prediction) -> None:
    """Teach :func:`predicted_weights` the next update of another optimizer class."""
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise TypeError(f"cls must be a torch.optim.Optimizer subclass, got {cls!r}")
    _PREDICTIONS[cls] = fn


def _torch_optim(recipe: Callable[[], Chain], owner: str, decoupled: bool | None = None) -> Prediction:
    """A torch.optim optimizer predicted by the gradkit recipe with the same update: its state is read
    as the state of the recipe's transform named ``owner`` (the keys are the same)."""

    def predict(optimizer, steps):
        transform = recipe()
        namespace = transform.namespaces[[t.name for t in transform.transforms].index(owner)]
        state = {}
        for p, entries in optimizer.state.items():
            if not entries:
                continue
            own = {f"{namespace}.{k}": v for k, v in entries.items() if k != "step" and v is not None}
            state[p] = {**own, "step": int(entries.get("step", 1))}  # torch.optim.SGD counts no steps
        groups = [{**g, "decoupled_weight_decay": g.get("decoupled_weight_decay", False) if decoupled is None
                   else decoupled} for g in optimizer.param_groups]
        return predicted_offsets(transform, groups, state, steps)

    return predict


def _gradkit(optimizer, steps):
    return predicted_offsets(optimizer.transform, optimizer.param_groups, optimizer.state, steps,
                             optimizer.compute_dtype)


register_prediction(torch.optim.SGD, _torch_optim(sgd_chain, "momentum"))
register_prediction(torch.optim.Adam, _torch_optim(adam_chain, "adam"))
register_prediction(torch.optim.AdamW, _torch_optim(adam_chain, "adam", decoupled=True))


def _prediction_for(optimizer) -> Prediction:
    if isinstance(optimizer, Optimizer):
        return _gradkit
    fn = _PREDICTIONS.get(type(optimizer))
    if fn is None:
        known = ", ".join(sorted(f"{c.__module__}.{c.__qualname__}" for c in _PREDICTIONS))
        raise TypeError(f"XGrad does not know how to predict the next update of {type(optimizer).__qualname__}; "
                        f"known: gradkit optimizers, {known} (see gradkit.optim.xgrad.register_prediction)")
    return fn


@torch.no_grad()
def predicted_update(optimizer: torch.optim.Optimizer, steps: float = 1) -> tuple[list[Tensor], list[Tensor]]:
    """``(params, offsets)``: the predicted weights are ``params + offsets`` (``-s * lr * delta``)."""
    return _prediction_for(optimizer)(optimizer, steps)


def predicted_weights(optimizer: torch.optim.Optimizer, steps: float = 1):
    """Context manager: inside the block the params hold XGrad's predicted weights; on exit the real ones
    come back.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    >>> w.grad = torch.tensor([2.0]); opt.step()
    >>> with predicted_weights(opt):
    ...     round(w.item(), 4)
    0.6
    """
    return shifted_params(*predicted_update(optimizer, steps))
