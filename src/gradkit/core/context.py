"""What a transform sees besides updates, state and params during one step of one param group.

The context carries a *pending affine form* so that scalar work costs no pass over memory. The true
update is

    scale * (updates / denominator) + decay * params        (denominator absent: just updates)

with ``scale = scale_num / scale_div``. Transforms that declare ``scale_aware = True`` only touch
this form (:meth:`multiply`, :meth:`divide`, :meth:`add_decay`) and never read the update values;
for every other transform the chain first calls :meth:`materialize`, so they see plain updates.
At the end, :meth:`apply` adds the form to the params with torch.optim's own ops
(``params *= 1 + decay``; ``params.addcdiv_(updates, denominator, value=scale)``), which is what
makes gradkit's Adam/AdamW/SGD bitwise equal to torch.optim's multi-tensor path.

Ownership: ``updates`` may alias ``p.grad`` or an optimizer state buffer. A transform that wants to
write into its input calls :meth:`writable` (which copies only when the input is not owned); one
that returns fresh tensors passes them through :meth:`fresh`. Anything else is treated as borrowed.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from gradkit.core.hyper import resolve

Scalars = float | list[float]


class StepContext:
    def __init__(self, group: dict, steps: Sequence[int], group_state: dict | None = None):
        self.group = group
        self.steps = list(steps)
        # The common step count when every tensor has taken the same number of steps (the usual case).
        self.step: int | None = self.steps[0] if self.steps and all(s == self.steps[0] for s in self.steps) else None
        self.scale_num: Scalars = 1.0
        self.scale_div: Scalars = 1.0
        self.decay: Scalars = 0.0
        self.denominator: list[Tensor] | None = None
        self.owned = False
        self.namespace = ""
        self._group_state = {} if group_state is None else group_state
        self._claimed = False

    # -- hyperparameters -------------------------------------------------------------------
    def value(self, x: Any) -> Any:
        return resolve(x, self.group)

    @property
    def group_state(self) -> dict:
        """Persistent, group-level state of the running transform (saved in the state_dict)."""
        return self._group_state.setdefault(self.namespace, {})

    # -- ownership ---------------------------------------------------------------------------
    def writable(self, updates: list[Tensor]) -> list[Tensor]:
        self._claimed = True
        if not self.owned:
            updates = [u.clone() for u in updates]
            self.owned = True
        return updates

    def fresh(self, updates: list[Tensor]) -> list[Tensor]:
        self._claimed = True
        self.owned = True
        return updates

    # -- the pending affine form -------------------------------------------------------------
    @property
    def scale(self) -> Scalars:
        return _zip(self.scale_num, self.scale_div, lambda n, d: n / d)

    @property
    def is_plain(self) -> bool:
        return self.denominator is None and _all(self.scale, 1.0) and _all(self.decay, 0.0)

    def multiply(self, factor: Scalars) -> None:
        """Multiply the true update by ``factor`` (a float, or one float per tensor)."""
        self.scale_num = _zip(self.scale_num, factor, lambda a, b: a * b)
        self.decay = _zip(self.decay, factor, lambda a, b: a * b)

    def divide(self, divisor: Scalars) -> None:
        """Divide the true update by ``divisor`` (a float, or one float per tensor)."""
        self.scale_div = _zip(self.scale_div, divisor, lambda a, b: a * b)
        self.decay = _zip(self.decay, divisor, lambda a, b: a / b)

    def add_decay(self, weight_decay: Scalars) -> None:
        """Add ``weight_decay * params`` to the true update."""
        self.decay = _zip(self.decay, weight_decay, lambda a, b: a + b)

    def quotient(self, numerator: list[Tensor], denominator: list[Tensor]) -> list[Tensor]:
        """Return ``numerator`` with the update left pending as ``numerator / denominator``.

        ``numerator`` is treated as borrowed (it is usually a state buffer); ``denominator`` must be
        fresh tensors owned by the caller.
        """
        if self.denominator is not None or not (_all(self.scale, 1.0) and _all(self.decay, 0.0)):
            raise RuntimeError("quotient() needs a plain context: the chain materializes before non-scale-aware transforms")
        self.denominator = denominator
        self._claimed = True
        self.owned = False
        return numerator

    def absorb(self, inner: "StepContext", updates: list[Tensor], order: list[int] | None = None) -> list[Tensor]:
        """Take over the pending form of a nested chain's context, unevaluated.

        For transforms that run an inner chain (on the same tensors, possibly listed in another order:
        ``order[j]`` is the inner index of outer tensor ``j``). Keeps an inner Adam's final addcdiv.
        """

        def reorder(x):
            return [x[j] for j in order] if order is not None and isinstance(x, list) else x

        if order is not None:
            updates = [updates[j] for j in order]
        if inner.denominator is not None:
            updates = self.quotient(updates, reorder(inner.denominator))
        self.multiply(reorder(inner.scale_num))
        self.divide(reorder(inner.scale_div))
        self.add_decay(reorder(inner.decay))
        return updates

    def materialize(self, updates: list[Tensor], params: list[Tensor]) -> list[Tensor]:
        """Evaluate the pending form so that ``updates`` is the true update."""
        if self.is_plain:
            return updates
        if self.denominator is not None:
            if self.owned:
                torch._foreach_div_(updates, self.denominator)
            else:
                updates = torch._foreach_div(updates, self.denominator)
                self.owned = True
            self.denominator = None
        scale = self.scale
        if not _all(scale, 1.0):
            if self.owned:
                torch._foreach_mul_(updates, scale)
            else:
                updates = torch._foreach_mul(updates, scale)
                self.owned = True
        if not _all(self.decay, 0.0):
            other = params if isinstance(self.decay, float) else torch._foreach_mul(params, self.decay)
            alpha = self.decay if isinstance(self.decay, float) else 1.0
            if self.owned:
                torch._foreach_add_(updates, other, alpha=alpha)
            else:
                updates = torch._foreach_add(updates, other, alpha=alpha)
                self.owned = True
        self.scale_num, self.scale_div, self.decay = 1.0, 1.0, 0.0
        self._claimed = True
        return updates

    def apply(self, params: list[Tensor], updates: list[Tensor]) -> None:
        """``params += scale * updates / denominator + decay * params`` in the fewest passes."""
        if not params:
            return
        decay, scale = self.decay, self.scale
        if isinstance(decay, list):
            torch._foreach_mul_(params, [1.0 + d for d in decay])
        elif decay != 0.0:
            torch._foreach_mul_(params, 1.0 + decay)
        if self.denominator is not None:
            torch._foreach_addcdiv_(params, updates, self.denominator, scale)
        elif isinstance(scale, list):
            torch._foreach_add_(params, torch._foreach_mul(updates, scale))
        elif scale != 0.0:
            torch._foreach_add_(params, updates, alpha=scale)


def _all(x: Scalars, value: float) -> bool:
    return x == value if isinstance(x, float) else all(v == value for v in x)


def _zip(a: Scalars, b: Scalars, op) -> Scalars:
    if isinstance(a, float) and isinstance(b, float):
        return op(a, b)
    n = len(a) if isinstance(a, list) else len(b)
    a_list = a if isinstance(a, list) else [a] * n
    b_list = b if isinstance(b, list) else [b] * n
    return [op(x, y) for x, y in zip(a_list, b_list)]
