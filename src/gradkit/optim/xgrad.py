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

Parameters without state yet (before their first step) are not moved: there is no update to predict
from. Supported: ``gradkit.optim.SGD`` / ``Adam`` / ``AdamW`` and ``torch.optim.SGD`` / ``Adam`` /
``AdamW``; :func:`register_prediction` adds others. SGD needs ``momentum > 0`` and no Nesterov
(the paper's SGDM rule); anything else raises instead of guessing.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor

from gradkit.optim.adam import Adam, AdamW
from gradkit.optim.sgd import SGD
from gradkit.registry import register_transform

__all__ = ["predicted_weights", "predicted_update", "register_prediction"]

# function(optimizer, group, params) -> (the params it predicts, their update directions delta); it is called
# for every group, also before any state exists, so that unsupported settings raise at once.
Prediction = Callable[[torch.optim.Optimizer, dict, list[Tensor]], tuple[list[Tensor], list[Tensor]]]
_PREDICTIONS: dict[type, Prediction] = {}


def register_prediction(cls: type, fn: Prediction) -> None:
    """Teach :func:`predicted_weights` the next update of another optimizer class."""
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise TypeError(f"cls must be a torch.optim.Optimizer subclass, got {cls!r}")
    _PREDICTIONS[cls] = fn


def _keys(optimizer) -> dict[str, str]:
    if isinstance(optimizer, (SGD, Adam, AdamW)):  # gradkit: state namespaced by the owning transform
        return {"momentum_buffer": "momentum.momentum_buffer", "exp_avg": "adam.exp_avg",
                "exp_avg_sq": "adam.exp_avg_sq", "max_exp_avg_sq": "adam.max_exp_avg_sq"}
    return {k: k for k in ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")}


def _sgd_delta(optimizer, group, params):
    if float(group["momentum"]) <= 0:
        raise ValueError("XGrad's SGD prediction uses the momentum buffer: momentum must be > 0, "
                         f"got {group['momentum']!r}")
    if group.get("nesterov", False):
        raise ValueError("XGrad predicts SGD with heavy-ball momentum (nesterov=False); got nesterov=True")
    key = _keys(optimizer)["momentum_buffer"]
    params = [p for p in params if optimizer.state[p].get(key) is not None]
    return params, [optimizer.state[p][key] for p in params]


def _adam_delta(optimizer, group, params, decoupled: bool):
    keys = _keys(optimizer)
    params = [p for p in params if "step" in optimizer.state[p]]
    if not params:
        return [], []
    b1, b2 = (float(b) for b in group["betas"])
    eps = float(group["eps"])
    states = [optimizer.state[p] for p in params]
    steps = [float(s["step"]) for s in states]  # gradkit keeps ints, torch.optim 0-dim tensors
    second = [s[keys["max_exp_avg_sq"]] if group.get("amsgrad", False) else s[keys["exp_avg_sq"]] for s in states]
    denom = torch._foreach_sqrt(second)
    torch._foreach_div_(denom, [math.sqrt(1.0 - b2**t) for t in steps])
    torch._foreach_add_(denom, eps)
    delta = torch._foreach_div([s[keys["exp_avg"]] for s in states], denom)
    torch._foreach_div_(delta, [1.0 - b1**t for t in steps])
    if decoupled and float(group["weight_decay"]) != 0:
        torch._foreach_add_(delta, [p.to(d.dtype) for p, d in zip(params, delta)], alpha=float(group["weight_decay"]))
    return params, delta


def _adam(optimizer, group, params):
    decoupled = isinstance(optimizer, (AdamW, torch.optim.AdamW)) or bool(group.get("decoupled_weight_decay", False))
    return _adam_delta(optimizer, group, params, decoupled)


for _cls, _fn in ((SGD, _sgd_delta), (torch.optim.SGD, _sgd_delta), (Adam, _adam), (AdamW, _adam),
                  (torch.optim.Adam, _adam), (torch.optim.AdamW, _adam)):
    register_prediction(_cls, _fn)


def _prediction_for(optimizer) -> Prediction:
    fn = _PREDICTIONS.get(type(optimizer))
    if fn is None:
        known = ", ".join(sorted(f"{c.__module__}.{c.__qualname__}" for c in _PREDICTIONS))
        raise TypeError(f"XGrad does not know how to predict the next update of {type(optimizer).__qualname__}; "
                        f"known: {known} (see gradkit.optim.xgrad.register_prediction)")
    return fn


@torch.no_grad()
def predicted_update(optimizer: torch.optim.Optimizer, steps: float = 1) -> tuple[list[Tensor], list[Tensor]]:
    """``(params, offsets)``: the predicted weights are ``params + offsets`` (``-s * lr * delta``)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, float)) or not (math.isfinite(steps) and steps > 0):
        raise ValueError(f"steps must be a finite number > 0, got {steps!r}")
    predict = _prediction_for(optimizer)
    all_params, offsets = [], []
    for group in optimizer.param_groups:
        # every group is checked, even before any state exists, so unsupported settings fail at once
        params, delta = predict(optimizer, group, [p for p in group["params"] if optimizer.state.get(p)])
        if not params:
            continue
        scale = -float(steps) * float(group["lr"])
        offsets.extend(torch._foreach_mul(delta, scale))
        all_params.extend(params)
    return all_params, offsets


@contextmanager
def predicted_weights(optimizer: torch.optim.Optimizer, steps: float = 1) -> Iterator[None]:
    """Inside the block the params hold XGrad's predicted weights; on exit the real ones come back."""
    params, offsets = predicted_update(optimizer, steps)
    with torch.no_grad():
        saved = torch._foreach_mul(params, 1.0) if params else []  # exact copies (keeps -0.0 and nan)
        if params:
            torch._foreach_add_(params, [o.to(p.dtype) for o, p in zip(offsets, params)])
    del offsets  # only the saved weights stay alive inside the block
    try:
        yield
    finally:
        if params:
            with torch.no_grad():
                torch._foreach_copy_(params, saved)


register_transform(
    "xgrad_predicted_weights",
    summary="(training-loop wrapper) gradients at the weights predicted s steps ahead: "
            "gradkit.optim.xgrad.predicted_weights(opt, steps)",
    reference="Guan, Li, Shi & Meng, XGrad: Boosting Gradient-Based Optimizers With Weight Prediction, IEEE TPAMI 2024, "
              "arXiv:2305.18240",
)(predicted_weights)
