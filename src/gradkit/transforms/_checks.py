"""Type and range checks shared by the transforms.

A number is what torch.optim takes for a number: an int or a float, or a real tensor of one element
(torch.optim accepts ``lr=torch.tensor(1e-3)``). Text and bools are refused with ``TypeError`` naming the
argument (``float("1e-3")`` and ``float(True)`` would convert them, which is how such values used to slip
through); a number out of range is refused with ``ValueError`` naming the argument and the allowed range.
"""
from __future__ import annotations

import math
from typing import Callable

from gradkit.core.hyper import arg_name, check_hyper, is_number, resolve

__all__ = ["is_number", "number", "non_negative", "positive", "unit_interval", "betas", "boolean"]


def number(value, group, name: str, ok: Callable[[float], bool], allowed: str) -> float:
    """Resolve ``value``; ``TypeError`` unless a number, ``ValueError`` unless finite and ``ok``."""
    resolved = resolve(value, group)
    if not is_number(resolved):
        raise TypeError(f"{arg_name(value, name)} must be a number, got {type(resolved).__name__} {resolved!r}")
    x = float(resolved)
    if not (math.isfinite(x) and ok(x)):
        raise ValueError(f"{arg_name(value, name)} must be {allowed}, got {resolved!r}")
    return x


def non_negative(value, group, name):
    return number(value, group, name, lambda x: x >= 0, "a finite number >= 0")


def positive(value, group, name):
    return number(value, group, name, lambda x: x > 0, "a finite number > 0")


def unit_interval(value, group, name, *, closed_right: bool = False):
    if closed_right:
        return number(value, group, name, lambda x: 0 <= x <= 1, "in [0, 1]")
    return number(value, group, name, lambda x: 0 <= x < 1, "in [0, 1)")


def betas(value, group, name, count: int = 2):
    resolved = resolve(value, group)
    shown = arg_name(value, name)
    if not isinstance(resolved, (tuple, list)):
        raise ValueError(f"{shown} must be a tuple of {count} numbers in [0, 1), got {type(resolved).__name__} {resolved!r}")
    if not all(is_number(b) for b in resolved):
        kinds = ", ".join(type(b).__name__ for b in resolved)
        raise TypeError(f"{shown} must be a tuple of {count} numbers in [0, 1), got ({kinds}) {resolved!r}")
    if len(resolved) != count:
        raise ValueError(f"{shown} must be a tuple of {count} numbers in [0, 1), got {resolved!r}")
    out = tuple(float(b) for b in resolved)
    if not all(math.isfinite(b) and 0 <= b < 1 for b in out):
        raise ValueError(f"{shown} must be a tuple of {count} numbers in [0, 1), got {resolved!r}")
    return out


def boolean(value, group, name):
    return check_hyper(value, group, name, lambda x: isinstance(x, bool), "True or False")
