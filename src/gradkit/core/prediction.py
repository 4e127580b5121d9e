"""Weight prediction: the params a chain's current state says the next steps will reach.

A transform that can say what update its state gives *without a new gradient* implements
``predict(state, params, ctx)`` (Adam: the bias-corrected quotient of its moments; momentum: its
buffer). :meth:`Chain.predict <gradkit.core.transform.Chain.predict>` runs that transform and the
scale-aware ones after it (weight decay, the learning rate), so the prediction of any recipe follows
from its own transforms, with no algorithm written here. :func:`predicted_weights` moves the params
``steps`` such updates ahead and restores them bit for bit on exit: XGrad
(:mod:`gradkit.optim.xgrad`) and any other eval-time parameter swap build on it.

>>> import torch, gradkit
>>> w = torch.nn.Parameter(torch.tensor([1.0]))
>>> opt = gradkit.optim.SGD([w], lr=0.1, momentum=0.9)
>>> w.grad = torch.tensor([2.0]); opt.step()
>>> with opt.predicted_weights(steps=2):
...     round(w.item(), 4)  # 0.8 - 2 * 0.1 * 2
0.4
>>> round(w.item(), 4)
0.8
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

import torch
from torch import Tensor

from gradkit.core.context import StepContext
from gradkit.core.transform import GradientTransform

__all__ = ["predicted_offsets", "shifted_params", "predicted_weights"]


def _check_steps(steps) -> float:
    if isinstance(steps, bool) or not isinstance(steps, (int, float)) or not (math.isfinite(steps) and steps > 0):
        raise ValueError(f"steps must be a finite number > 0, got {steps!r}")
    return float(steps)


@torch.no_grad()
def predicted_offsets(transform: GradientTransform, groups: list[dict], state: Mapping[Tensor, dict], steps: float = 1,
                      compute_dtype: Callable[[Tensor], torch.dtype] = lambda p: p.dtype
                      ) -> tuple[list[Tensor], list[Tensor]]:
    """``(params, offsets)``: ``params + offsets`` are the weights ``steps`` updates ahead.

    ``state[p]`` holds each param's state in ``transform``'s layout and its int ``"step"`` (params without
    a ``"step"`` have taken no step and are not moved). Every group is asked, also before any state
    exists, so that settings a prediction does not support raise at once.
    """
    steps = _check_steps(steps)
    all_params, offsets = [], []
    for group in groups:
        params = [p for p in group["params"] if "step" in state.get(p, {})]
        per_param = [state[p] for p in params]
        keys = sorted(set().union(*per_param) - {"step"}) if per_param else []
        lists = {k: [s.get(k) for s in per_param] for k in keys}
        params_c = [p if compute_dtype(p) == p.dtype else p.to(compute_dtype(p)) for p in params]
        ctx = StepContext(group, [int(s["step"]) for s in per_param])
        updates = transform.predict(lists, params_c, ctx)
        if not params:
            continue
        ctx.multiply(steps)
        offsets.extend(ctx.materialize(updates, params_c))
        all_params.extend(params)
    return all_params, offsets


@contextmanager
def shifted_params(params: list[Tensor], offsets: list[Tensor]) -> Iterator[None]:
    """Inside the block ``params`` hold ``params + offsets``; on exit the real values come back exactly."""
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


def predicted_weights(transform: GradientTransform, groups: list[dict], state: Mapping[Tensor, dict], steps: float = 1,
                      compute_dtype: Callable[[Tensor], torch.dtype] = lambda p: p.dtype):
    """Context manager: the params hold the weights ``steps`` updates ahead (:func:`predicted_offsets`)."""
    return shifted_params(*predicted_offsets(transform, groups, state, steps, compute_dtype))
