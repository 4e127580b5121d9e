"""Named optimizers and transforms: what ``gradkit list`` shows and what ``gradkit bench`` runs.

Recipes register themselves where they are defined::

    @register_optimizer("adamw", summary="Adam with decoupled weight decay", reference="...")
    class AdamW(Optimizer): ...

``get_optimizer(name)`` returns the factory (called as ``factory(params, **hyperparameters)``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Entry", "register_optimizer", "register_transform", "get_optimizer", "list_entries"]

KINDS = ("optimizer", "transform")
# Modules whose import registers entries; imported lazily so ``import gradkit`` stays light.
_PROVIDERS = ("gradkit.optim", "gradkit.transforms", "gradkit.lowrank")


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any
    summary: str
    reference: str


_ENTRIES: dict[tuple[str, str], Entry] = {}


def _register(kind: str, name: str, summary: str, reference: str) -> Callable:
    if name != name.lower() or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"registry names are lowercase letters, digits, '-' and '_', got {name!r}")

    def decorate(obj):
        key = (kind, name)
        if key in _ENTRIES and _ENTRIES[key].obj is not obj:
            raise ValueError(f"{kind} {name!r} is already registered to {_ENTRIES[key].obj!r}")
        _ENTRIES[key] = Entry(kind, name, obj, summary, reference)
        return obj

    return decorate


def register_optimizer(name: str, *, summary: str, reference: str) -> Callable:
    return _register("optimizer", name, summary, reference)


def register_transform(name: str, *, summary: str, reference: str = "") -> Callable:
    return _register("transform", name, summary, reference)


def _load_providers() -> None:
    for module in _PROVIDERS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # a provider that exists but fails to import is a real error
                raise


def list_entries(kind: str | None = None) -> list[Entry]:
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    _load_providers()
    return sorted((e for e in _ENTRIES.values() if kind in (None, e.kind)), key=lambda e: (e.kind, e.name))


def get_optimizer(name: str) -> Callable:
    _load_providers()
    entry = _ENTRIES.get(("optimizer", name.lower()))
    if entry is None:
        known = ", ".join(sorted(n for k, n in _ENTRIES if k == "optimizer"))
        raise KeyError(f"unknown optimizer {name!r}; known: {known}")
    return entry.obj
