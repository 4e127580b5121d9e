"""The multi-tensor arithmetic a transform's math is written in, once, for both steps.

A transform's ``update`` does its tensor math through ``ctx.ops`` on lists of tensors. There are two
implementations of the same vocabulary:

- :data:`FOREACH` (the unfused step): every op is one ``torch._foreach_*`` call over the list, with
  scalars as Python floats (one per list or one per tensor), exactly the ops torch.optim's multi-tensor
  path runs, so the numbers are bitwise torch.optim's where the op sequence is;
- :data:`TRACED` (the fused step, :mod:`gradkit.core.fused`): every op is plain tensor math on each
  tensor, to be traced by ``torch.compile`` into one program; scalars arrive as 0-dim tensors (so a new
  learning rate or step count never recompiles) and may be one per tensor.

A *scalar* argument is a number, a 0-dim tensor, or a list of either with one entry per tensor. Ops by
a Python float that cannot change a value (multiplying or dividing by 1, adding 0) are skipped: a
transform may then write a branch-free form (for instance a 0/1 weight) without costing the unfused
step a pass.

>>> import torch
>>> xs = [torch.ones(2), torch.ones(3)]
>>> FOREACH.mul_(xs, [2.0, 3.0])
>>> [x.tolist() for x in FOREACH.add(xs, xs, alpha=0.5)]
[[3.0, 3.0], [4.5, 4.5, 4.5]]
>>> [x.tolist() for x in TRACED.lerp(xs, [torch.zeros(2), torch.zeros(3)], torch.tensor(0.5))]
[[1.0, 1.0], [1.5, 1.5, 1.5]]
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

__all__ = ["Ops", "FOREACH", "TRACED", "ScalarList", "is_number", "at"]

Scalar = Any  # float | Tensor | list of those, one per tensor


def is_number(x: Any, value: float | None = None) -> bool:
    """True for a Python number (equal to ``value`` when given); tensors and lists are not numbers."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    return value is None or x == value


def at(x: Scalar, i: int) -> Any:
    """Tensor ``i``'s value of a scalar argument."""
    return x[i] if isinstance(x, (list, tuple)) else x


def _all(x: Scalar, value: float) -> bool:
    if isinstance(x, (list, tuple)):
        return all(is_number(v, value) for v in x)
    return is_number(x, value)


def _float_list(x: Scalar) -> bool:
    return isinstance(x, (list, tuple)) and all(is_number(v) for v in x)


class Ops:
    """The traced implementation: each op on each tensor (see the module docstring)."""

    traced = True

    # -- elementwise, in place -------------------------------------------------------------------
    def copy_(self, xs: Sequence[Tensor], ys: Sequence[Tensor]) -> None:
        for x, y in zip(xs, ys):
            x.copy_(y)

    def zero_(self, xs):
        for x in xs:
            x.zero_()

    def mul_(self, xs, s) -> None:
        if _all(s, 1.0):
            return
        for i, x in enumerate(xs):
            x.mul_(at(s, i))

    def div_(self, xs, s) -> None:
        if _all(s, 1.0):
            return
        for i, x in enumerate(xs):
            x.div_(at(s, i))

    def add_(self, xs, other, alpha: Scalar = 1.0) -> None:
        """``x += alpha * y`` (``other`` a list of tensors) or ``x += s`` (``other`` a scalar)."""
        if not _is_tensor_list(other):
            if _all(other, 0.0):
                return
            for i, x in enumerate(xs):
                x.add_(at(other, i))
            return
        for i, (x, y) in enumerate(zip(xs, other)):
            a = at(alpha, i)
            x.add_(y, alpha=a) if is_number(a) else x.add_(y * a)

    def sub_(self, xs, ys) -> None:
        for x, y in zip(xs, ys):
            x.sub_(y)

    def lerp_(self, xs, ys, w) -> None:
        for i, (x, y) in enumerate(zip(xs, ys)):
            x.lerp_(y, _like(at(w, i), x))

    def addcmul_(self, xs, a, b, value: Scalar = 1.0) -> None:
        for i, (x, p, q) in enumerate(zip(xs, a, b)):
            v = at(value, i)
            x.addcmul_(p, q, value=v) if is_number(v) else x.add_(p * q * v)

    def addcdiv_(self, xs, a, b, value: Scalar = 1.0) -> None:
        for i, (x, p, q) in enumerate(zip(xs, a, b)):
            v = at(value, i)
            x.addcdiv_(p, q, value=v) if is_number(v) else x.add_(p / q * v)

    def maximum_(self, xs, ys) -> None:
        for x, y in zip(xs, ys):
            torch.maximum(x, y, out=x)

    def clamp_min_(self, xs, s) -> None:
        for i, x in enumerate(xs):
            x.clamp_(min=at(s, i))

    def clamp_max_(self, xs, s) -> None:
        for i, x in enumerate(xs):
            x.clamp_(max=at(s, i))

    def sqrt_(self, xs):
        for x in xs:
            x.sqrt_()

    def abs_(self, xs):
        for x in xs:
            x.abs_()

    def sign_(self, xs):
        for x in xs:
            x.sign_()

    def sigmoid_(self, xs):
        for x in xs:
            x.sigmoid_()

    def neg_(self, xs):
        for x in xs:
            x.neg_()

    # -- elementwise, new tensors -----------------------------------------------------------------
    def mul(self, xs, s) -> list[Tensor]:
        if _is_tensor_list(s):
            return [x * y for x, y in zip(xs, s)]
        return [x * at(s, i) for i, x in enumerate(xs)]

    def div(self, xs, s) -> list[Tensor]:
        if _is_tensor_list(s):
            return [x / y for x, y in zip(xs, s)]
        return [x / at(s, i) for i, x in enumerate(xs)]

    def add(self, xs, other, alpha: Scalar = 1.0) -> list[Tensor]:
        if not _is_tensor_list(other):
            return [x + at(other, i) for i, x in enumerate(xs)]
        out = []
        for i, (x, y) in enumerate(zip(xs, other)):
            a = at(alpha, i)
            out.append(x + y if is_number(a, 1.0) else x + y * a)
        return out

    def sub(self, xs, ys) -> list[Tensor]:
        return [x - y for x, y in zip(xs, ys)]

    def lerp(self, xs, ys, w) -> list[Tensor]:
        return [torch.lerp(x, y, _like(at(w, i), x)) for i, (x, y) in enumerate(zip(xs, ys))]

    def addcdiv(self, xs, a, b, value: Scalar = 1.0) -> list[Tensor]:
        return [x + p / q * at(value, i) for i, (x, p, q) in enumerate(zip(xs, a, b))]

    def sqrt(self, xs):
        return [x.sqrt() for x in xs]

    def abs(self, xs):
        return [x.abs() for x in xs]

    def sign(self, xs):
        return [x.sign() for x in xs]

    def clone(self, xs):
        return [x.clone() for x in xs]

    def empty_like(self, xs):
        return [torch.empty_like(x) for x in xs]

    # -- reductions --------------------------------------------------------------------------------
    def norms(self, xs) -> list[Tensor]:
        """The 2-norm of each tensor (0-dim tensors, in each tensor's dtype)."""
        return [torch.linalg.vector_norm(x) for x in xs]


class _Foreach(Ops):
    """The unfused implementation: one ``torch._foreach_*`` call per op."""

    traced = False

    def copy_(self, xs, ys):
        torch._foreach_copy_(xs, ys)

    def zero_(self, xs):
        torch._foreach_zero_(xs)

    def mul_(self, xs, s):
        if not _all(s, 1.0):
            torch._foreach_mul_(xs, _cpu_scalar(xs, s))

    def div_(self, xs, s):
        if not _all(s, 1.0):
            torch._foreach_div_(xs, _cpu_scalar(xs, s))

    def add_(self, xs, other, alpha=1.0):
        if not _is_tensor_list(other):
            if not _all(other, 0.0):
                torch._foreach_add_(xs, _cpu_addend(xs, other))
        elif isinstance(alpha, (list, tuple)):
            torch._foreach_add_(xs, torch._foreach_mul(other, alpha))
        else:
            torch._foreach_add_(xs, other, alpha=alpha)

    def sub_(self, xs, ys):
        torch._foreach_sub_(xs, ys)

    def lerp_(self, xs, ys, w):
        torch._foreach_lerp_(xs, ys, w)

    def addcmul_(self, xs, a, b, value=1.0):
        torch._foreach_addcmul_(xs, a, b, value)

    def addcdiv_(self, xs, a, b, value=1.0):
        torch._foreach_addcdiv_(xs, a, b, value)

    def maximum_(self, xs, ys):
        torch._foreach_maximum_(xs, ys)

    def clamp_min_(self, xs, s):
        torch._foreach_clamp_min_(xs, s)

    def clamp_max_(self, xs, s):
        torch._foreach_clamp_max_(xs, s)

    def sqrt_(self, xs):
        torch._foreach_sqrt_(xs)

    def abs_(self, xs):
        torch._foreach_abs_(xs)

    def sign_(self, xs):
        torch._foreach_sign_(xs)

    def sigmoid_(self, xs):
        torch._foreach_sigmoid_(xs)

    def neg_(self, xs):
        torch._foreach_neg_(xs)

    def mul(self, xs, s):
        return torch._foreach_mul(xs, _cpu_scalar(xs, s))

    def div(self, xs, s):
        return torch._foreach_div(xs, _cpu_scalar(xs, s))

    def add(self, xs, other, alpha=1.0):
        if not _is_tensor_list(other):
            return torch._foreach_add(xs, _cpu_addend(xs, other))
        if isinstance(alpha, (list, tuple)):
            return torch._foreach_add(xs, torch._foreach_mul(other, alpha))
        return torch._foreach_add(xs, other, alpha=alpha)

    def sub(self, xs, ys):
        return torch._foreach_sub(xs, ys)

    def lerp(self, xs, ys, w):
        return torch._foreach_lerp(xs, ys, w)

    def addcdiv(self, xs, a, b, value=1.0):
        return torch._foreach_addcdiv(xs, a, b, value)

    def sqrt(self, xs):
        return torch._foreach_sqrt(xs)

    def abs(self, xs):
        return torch._foreach_abs(xs)

    def sign(self, xs):
        return torch._foreach_sign(xs)

    def norms(self, xs):
        return list(torch._foreach_norm(xs)) if xs else []


# On the CPU, a foreach op by a Python number wraps the number into a double tensor and converts it for
# every tensor of the list (allocations and a copy each: mul_/div_/add_ over 17 tensors of 4096 values
# took 1.7-2.9x as long so, 1 thread); by a 0-dim tensor of the list's dtype it reads the value directly.
# The values are the same: the kernel rounds the number to the list's dtype (float32 or float64) either way.
_SCALARS: dict = {}


def _cpu_scalar(xs: Sequence[Tensor], s: Any) -> Any:
    """``s`` as a cached 0-dim tensor where ``xs`` are plain CPU tensors of one float32/float64 dtype;
    otherwise ``s`` itself."""
    if type(s) is not float or not xs or s == 0.0:  # (0.0 and -0.0 would share a cache entry)
        return s
    dtype = xs[0].dtype
    if dtype not in (torch.float32, torch.float64) or xs[0].device.type != "cpu" or not _plain(xs, dtype):
        return s
    key = (s, dtype)
    value = _SCALARS.get(key)
    if value is None:
        if len(_SCALARS) >= 256:  # per-step values (bias corrections) would otherwise accumulate
            _SCALARS.clear()
        with torch.inference_mode(False):  # made in inference mode, it could not enter autograd later
            value = _SCALARS[key] = torch.tensor(s, dtype=dtype, device="cpu")  # whatever the default device
    return value


def _cpu_addend(xs: Sequence[Tensor], s: Any) -> Any:
    """A scalar addend for ``_foreach_add(_)``: its tensor-scalar overload converts the scalar per tensor,
    so a list of the one 0-dim tensor (the list overload, which broadcasts it) is passed instead."""
    value = _cpu_scalar(xs, s)
    return [value] * len(xs) if isinstance(value, Tensor) else value


def _plain(xs: Sequence[Tensor], dtype: torch.dtype) -> bool:
    # tensor subclasses (DTensor) dispatch differently and are left to the number overloads
    return all(x.dtype == dtype and (type(x) is Tensor or type(x) is torch.nn.Parameter) for x in xs)


def _like(w: Any, x: Tensor) -> Any:
    """A tensor weight in ``x``'s dtype (lerp does not promote its weight)."""
    return w.to(x.dtype) if isinstance(w, Tensor) and w.dtype != x.dtype else w


def _is_tensor_list(x: Any) -> bool:
    """True for a list of tensor operands; a :class:`ScalarList` (one scalar per tensor) is not one."""
    return isinstance(x, (list, tuple)) and not isinstance(x, ScalarList) and bool(x) and isinstance(x[0], Tensor)


class ScalarList(list):
    """One scalar per tensor (0-dim tensors or numbers): marks a list as scalars rather than operands."""


#: The unfused (multi-tensor) implementation.
FOREACH = _Foreach()
#: The traced (fused, compiled) implementation.
TRACED = Ops()
