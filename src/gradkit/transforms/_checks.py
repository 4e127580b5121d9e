"""Range checks shared by the transforms; each raises ValueError naming the argument."""
from __future__ import annotations

import math
from typing import Any

from gradkit.core.hyper import check_hyper


def _real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def non_negative(value, group, name):
    return float(check_hyper(value, group, name, lambda x: _real(float(x)) and float(x) >= 0, "a finite number >= 0"))


def positive(value, group, name):
    return float(check_hyper(value, group, name, lambda x: _real(float(x)) and float(x) > 0, "a finite number > 0"))


def unit_interval(value, group, name, *, closed_right: bool = False):
    if closed_right:
        return float(check_hyper(value, group, name, lambda x: _real(float(x)) and 0 <= float(x) <= 1, "in [0, 1]"))
    return float(check_hyper(value, group, name, lambda x: _real(float(x)) and 0 <= float(x) < 1, "in [0, 1)"))


def betas(value, group, name, count: int = 2):
    def ok(b):
        return isinstance(b, (tuple, list)) and len(b) == count and all(_real(float(x)) and 0 <= float(x) < 1 for x in b)

    return tuple(float(b) for b in check_hyper(value, group, name, ok, f"a tuple of {count} numbers in [0, 1)"))


def boolean(value, group, name):
    return check_hyper(value, group, name, lambda x: isinstance(x, bool), "True or False")
