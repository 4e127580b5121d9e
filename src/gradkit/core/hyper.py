"""References from a transform's hyperparameter to a key of the optimizer's param group.

A transform built with ``lr=hp("lr")`` reads ``group["lr"]`` at every step, so param groups can
override it and torch LR schedulers can change it; a transform built with a plain number uses that
number everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Hyper", "hp", "resolve", "check_hyper"]


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
    return (not out) if value.negate else out


def arg_name(value: Any, fallback: str) -> str:
    """The name a user knows an argument by: the group key for references, else the transform's."""
    return value.key if isinstance(value, Hyper) else fallback


def check_hyper(value: Any, group: dict | None, name: str, ok: Callable[[Any], bool], allowed: str) -> Any:
    """Resolve ``value`` and raise ``ValueError`` naming the argument and its allowed values if not ``ok``."""
    resolved = resolve(value, group)
    try:
        good = bool(ok(resolved))
    except TypeError:
        good = False
    if not good:
        raise ValueError(f"{arg_name(value, name)} must be {allowed}, got {resolved!r}")
    return resolved
