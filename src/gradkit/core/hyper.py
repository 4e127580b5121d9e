"""References from a transform's hyperparameter to a key of the optimizer's param group.

A transform built with ``lr=hp("lr")`` reads ``group["lr"]`` at every step, so param groups can
override it and torch LR schedulers can change it; a transform built with a plain number uses that
number everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

__all__ = ["Hyper", "hp", "resolve", "check_hyper", "is_number"]


@dataclass(frozen=True)
class Hyper:
    key: str
    negate: bool = False

    def __invert__(self) -> "Hyper":
        """``~hp("flag")`` reads ``not group["flag"]``."""
        return Hyper(self.key, not self.negate)

    def __repr__(self) -> str:
        return f"{'~' if self.negate else ''}hp({self.key!r})"


def hp(key: str) -> Hyper:
    return Hyper(key)


def resolve(value: Any, group: dict | None) -> Any:
    if not isinstance(value, Hyper):
        return value
    if group is None or value.key not in group:
        raise ValueError(f"hyperparameter {value.key!r} is not set in the param group: pass it in the defaults or the group")
    out = group[value.key]
    # only a bool has a negation; anything else is returned as is, for the flag's validator to refuse
    return (not out) if value.negate and isinstance(out, bool) else out


def arg_name(value: Any, fallback: str) -> str:
    """The name a user knows an argument by: the group key for references, else the transform's."""
    return value.key if isinstance(value, Hyper) else fallback


def is_number(x: Any) -> bool:
    """What torch.optim takes for a number: an int or float (not a bool), or a real tensor of one element."""
    if isinstance(x, torch.Tensor):
        return x.numel() == 1 and not x.is_complex() and x.dtype != torch.bool
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_hyper(value: Any, group: dict | None, name: str, ok: Callable[[Any], bool], allowed: str) -> Any:
    """Resolve ``value`` and raise ``ValueError`` naming the argument and its allowed values if not ``ok``.

    Text and bools are never numbers (torch.optim refuses ``lr="1e-3"``; ``float()`` would not): a check
    that accepts some numbers and not an arbitrary object is a numeric one, and there a bool, a str that
    reads as a number, or a str the check refuses is a ``TypeError``. Flags (``ok`` wants a bool) and
    choices (``ok`` wants one of some strings) accept no number, so they are unaffected.
    """
    resolved = resolve(value, group)
    good = _passes(ok, resolved)
    if _text_or_bool(resolved) and (not good or _as_number(resolved) is not None) and _numeric_check(ok):
        raise TypeError(f"{arg_name(value, name)} must be {allowed} given as a number, "
                        f"got {type(resolved).__name__} {resolved!r}")
    if not good or _has_nan(resolved):  # nan passes comparisons written as "not x < 0"; it is never a setting
        raise ValueError(f"{arg_name(value, name)} must be {allowed}, got {resolved!r}")
    return resolved


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return value != value
    if isinstance(value, (tuple, list)):
        return any(_has_nan(v) for v in value)
    return False


_NOT_A_VALUE = object()
_PROBES = (0, 1, 2, 5, 200, 0.5, 1.5, 1e-3, -1, (0.5, 0.5), (0.9, 0.99, 0.999), (3.4, -4.7, 2.0))


def _numeric_check(ok: Callable[[Any], bool]) -> bool:
    return not _passes(ok, _NOT_A_VALUE) and any(_passes(ok, x) for x in _PROBES)


def _text_or_bool(value: Any) -> bool:
    if isinstance(value, (str, bool)):
        return True
    return isinstance(value, (tuple, list)) and any(_text_or_bool(v) for v in value)


def _passes(ok: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(ok(value))
    except (TypeError, ValueError, OverflowError, RuntimeError):  # RuntimeError: bool() of a tensor
        return False


def _as_number(value: Any) -> Any:
    """The number a str or bool (or a tuple/list holding one) stands for, else ``None``."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, (tuple, list)) and any(isinstance(v, (str, bool)) for v in value):
        items = [_as_number(v) if isinstance(v, (str, bool)) else v for v in value]
        return None if any(v is None for v in items) else type(value)(items)
    return None
