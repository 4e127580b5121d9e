"""Step-dependent scalars for the common step or, when tensors have taken different numbers of steps,
one value per tensor (the form ``torch._foreach_*`` scalar-list overloads take)."""
from __future__ import annotations

from typing import Callable

from gradkit.core.context import StepContext


def per_step(ctx: StepContext, fn: Callable[[int], float]) -> float | list[float]:
    """``fn(ctx.step)`` when every tensor is at the same step, else ``[fn(s) for s in ctx.steps]``."""
    if ctx.step is not None:
        return fn(ctx.step)
    return [fn(s) for s in ctx.steps]


def as_list(value: float | list[float], n: int) -> list[float]:
    return list(value) if isinstance(value, list) else [value] * n
