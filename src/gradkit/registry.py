"""Everything gradkit knows by name, in one mechanism: optimizers, transforms, aggregators, attribution
methods, projectors and arena tasks.

Each kind has one :class:`Registry`. Things register themselves where they are defined::

    @register_optimizer("adamw", summary="Adam with decoupled weight decay", reference="...")
    class AdamW(Optimizer): ...

A registry is a read-only mapping from name to object; looking a name up first imports the modules
that provide that kind (lazily, so ``import gradkit`` stays light). Every module of the optimizer, transform,
aggregator and task packages is imported, so a new file there that registers something is found without
editing any list. An unknown name
is a :class:`UnknownNameError` (both a ``KeyError`` and a ``ValueError``) that lists the known names and
suggests the nearest one:

>>> from gradkit.registry import OPTIMIZERS
>>> OPTIMIZERS["adamw"].__name__
'AdamW'
>>> OPTIMIZERS["adamww"]
Traceback (most recent call last):
...
gradkit.registry.UnknownNameError: unknown optimizer 'adamww' (did you mean 'adamw'?); optimizers: ...

``gradkit list`` prints every registry; ``gradkit bench --opt NAME`` and ``gradkit.memory.estimate`` build
optimizers from it through :func:`gradkit.spec.build_optimizer`.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterator

__all__ = [
    "AGGREGATORS", "ATTRIBUTIONS", "Entry", "KINDS", "OPTIMIZERS", "PROJECTORS", "REGISTRIES", "Registry", "TASKS",
    "TRANSFORMS", "UnknownNameError", "get_optimizer", "list_entries", "register_attribution", "register_optimizer",
    "register_transform",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass(frozen=True)
class Entry:
    """One registered object: its kind, name, one-line summary and paper reference.

    >>> entry = OPTIMIZERS.entry("lion")
    >>> entry.kind, entry.name, entry.obj.__name__, "arXiv:2302.06675" in entry.reference
    ('optimizer', 'lion', 'Lion', True)
    """

    kind: str
    name: str
    obj: Any
    summary: str
    reference: str


class UnknownNameError(KeyError, ValueError):
    """A name that no registry entry has; the message lists the known names and the nearest one.

    It is a ``KeyError`` (a failed lookup) and a ``ValueError`` (a bad argument), so callers may catch either.

    >>> try:
    ...     TASKS.get("digits-mpl")
    ... except ValueError as err:
    ...     print(err)
    unknown task 'digits-mpl' (did you mean 'digits-mlp'?); tasks: ...
    """

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


def suggestion(name: str, names) -> str:
    """`` (did you mean 'adamw'?)`` for the nearest of ``names``, or ``""`` when none is close."""
    lowered = {str(n).lower(): n for n in names}
    close = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def _first_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


class Registry(Mapping):
    """Named objects of one kind.

    Args:
        kind: what the objects are, in words (``"optimizer"``); used in messages and by ``gradkit list``.
        providers: modules whose import registers the built-in entries; ``"package.*"`` also imports
            every public submodule of the package, so a new file there needs no import line.
        plural: the kind in the plural for messages (default ``kind + "s"``).

    >>> reg = Registry("colour")
    >>> reg.register("red", "#f00", summary="the first primary")
    '#f00'
    >>> reg["red"], list(reg), reg.entry("red").summary
    ('#f00', ['red'], 'the first primary')
    >>> reg.get("rde")
    Traceback (most recent call last):
    ...
    gradkit.registry.UnknownNameError: unknown colour 'rde' (did you mean 'red'?); colours: red
    """

    def __init__(self, kind: str, providers: tuple[str, ...] = (), *, plural: str | None = None):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.providers = tuple(providers)
        self._entries: dict[str, Entry] = {}
        self._loaded = not self.providers
        self._loading = False

    def register(self, name: str, obj: Any = None, *, summary: str | None = None, reference: str = ""):
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that registers what it decorates.

        ``summary`` defaults to the first line of the object's docstring. Names are lowercase letters,
        digits, ``-`` and ``_``. Registering a second object under a taken name is a ValueError;
        registering the same object again (a module imported twice) is allowed.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{self.kind} names are lowercase letters, digits, '-' and '_', got {name!r}")

        def decorate(target):
            current = self._entries.get(name)
            if current is not None and current.obj is not target:
                raise ValueError(f"{self.kind} {name!r} is already registered to {current.obj!r}")
            text = _first_line(target) if summary is None else summary
            self._entries[name] = Entry(self.kind, name, target, text, reference)
            return target

        return decorate if obj is None else decorate(obj)

    def _load(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            for provider in self.providers:
                package, scan = (provider[:-2], True) if provider.endswith(".*") else (provider, False)
                module = importlib.import_module(package)
                for info in pkgutil.iter_modules(getattr(module, "__path__", ()) if scan else ()):
                    if not info.name.startswith("_"):
                        importlib.import_module(f"{package}.{info.name}")
            self._loaded = True
        finally:
            self._loading = False

    def unknown(self, name: Any) -> UnknownNameError:
        """The error for a name this registry lacks: the known names and the nearest one."""
        self._load()
        names = sorted(self._entries)
        return UnknownNameError(f"unknown {self.kind} {name!r}{suggestion(name, names)}; {self.plural}: {', '.join(names)}")

    def entry(self, name: str) -> Entry:
        """The :class:`Entry` registered under ``name`` (case-insensitive)."""
        self._load()
        entry = self._entries.get(name.lower()) if isinstance(name, str) else None
        if entry is None:
            raise self.unknown(name)
        return entry

    def get(self, name: str) -> Any:  # type: ignore[override]
        """The object registered under ``name``; unlike ``dict.get``, an unknown name is an
        :class:`UnknownNameError`, never a silent ``None``."""
        return self.entry(name).obj

    def entries(self) -> list[Entry]:
        """Every entry, sorted by name."""
        self._load()
        return [self._entries[n] for n in sorted(self._entries)]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __getitem__(self, name: str) -> Any:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


OPTIMIZERS = Registry("optimizer", ("gradkit.optim.*", "gradkit.lowrank.*"))
TRANSFORMS = Registry("transform", ("gradkit.transforms.*", "gradkit.lowrank.*"))
AGGREGATORS = Registry("aggregator", ("gradkit.combine.*",))
# explain/ also holds plots and the command line, so only the methods its __init__ imports are loaded
ATTRIBUTIONS = Registry("attribution method", ("gradkit.explain",), plural="attribution methods")
PROJECTORS = Registry("projector", ("gradkit.lowrank.projectors",))
TASKS = Registry("task", ("gradkit.bench.tasks.*",))

#: Every registry by kind, in the order ``gradkit list`` prints them.
REGISTRIES: dict[str, Registry] = {r.kind.split()[0]: r for r in (OPTIMIZERS, TRANSFORMS, AGGREGATORS, ATTRIBUTIONS,
                                                               PROJECTORS, TASKS)}
KINDS = tuple(REGISTRIES)


def register_optimizer(name: str, *, summary: str, reference: str) -> Callable:
    """Class decorator: make an optimizer available to ``gradkit bench --opt NAME`` and ``gradkit list``.

    Args:
        name: the registry name (lowercase).
        summary: one line saying what it does.
        reference: the paper (authors, title, venue, arXiv) and the official code's address.

    The factory is called as ``factory(params, **hyperparameters)``; the contract suite
    (tests/core/test_all_optimizers.py) runs every registered optimizer with its defaults. In a new file
    ``gradkit/optim/<name>.py`` (found on the first lookup, no import line needed)::

        @register_optimizer("mysgd", summary="SGD written again", reference="Robbins & Monro, 1951")
        class MySGD(Optimizer): ...
    """
    return OPTIMIZERS.register(name, summary=summary, reference=reference)


def register_transform(name: str, *, summary: str, reference: str = "") -> Callable:
    """Decorator: make a gradient transform (its functional form or class) known to ``gradkit list``.

    Args:
        name: the functional name (``"scale_by_adam"``).
        summary: one line saying what it does.
        reference: the paper that introduced it, if any.

    >>> TRANSFORMS.entry("scale_by_adam").obj.__name__
    'ScaleByAdam'
    """
    return TRANSFORMS.register(name, summary=summary, reference=reference)


def register_attribution(name: str, *, summary: str | None = None, reference: str = "") -> Callable:
    """Decorator: make an attribution method ``method(model, inputs, target, **options)`` available by
    name to ``gradkit explain --methods`` and :func:`gradkit.explain.get_method`.

    Args:
        name: the short name (``"ig"``).
        summary: one line (default: the first line of the function's docstring).
        reference: the paper and official code.

    >>> ATTRIBUTIONS.entry("ig").obj.__name__
    'integrated_gradients'
    """
    return ATTRIBUTIONS.register(name, summary=summary, reference=reference)


def list_entries(kind: str | None = None) -> list[Entry]:
    """Every registered entry of ``kind`` (one of :data:`KINDS`), or of every kind with ``None``.

    >>> [e.name for e in list_entries("projector")]
    ['block', 'dct', 'randk', 'random', 'random_seeded', 'svd']
    """
    if kind is not None and kind not in REGISTRIES:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}{suggestion(kind, KINDS)}")
    kinds = KINDS if kind is None else (kind,)
    return [e for k in kinds for e in REGISTRIES[k].entries()]


def get_optimizer(name: str) -> Callable:
    """The registered optimizer factory called ``name`` (``factory(params, **hyperparameters)``).

    >>> get_optimizer("sgd").__name__
    'SGD'
    """
    return OPTIMIZERS[name]
