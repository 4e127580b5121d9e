"""Specs: the ``name:key=value,...`` strings that pick optimizers, aggregators and tasks, and the one
:func:`build_optimizer` that turns an optimizer spec into an optimizer (for ``gradkit bench --opt``, the
bench runner and ``gradkit.memory.estimate``).

Grammar (whitespace is not allowed)::

    spec    := [library ":"] name [":" args]
    args    := key "=" value ("," key "=" value)*
    value   := int | float | bool | none | tuple | word
    tuple   := value "/" value ("/" value)*      e.g. betas=0.9/0.999

Without a library, the name is looked up in gradkit's registry (``gradkit list``). A library selects
an optimizer class from another package, and only from these (no other module is ever imported):

* ``torch:AdamW`` is ``torch.optim.AdamW``;
* ``pytorch_optimizer:Adan`` is ``pytorch_optimizer.Adan``;
* ``torchao:AdamW8bit`` is ``torchao.optim.AdamW8bit`` (also ``AdamW4bit``, ``AdamWFp8``, ...);
* ``bitsandbytes:AdamW8bit`` is ``bitsandbytes.optim.AdamW8bit``;
* any package that declares an entry point in the group ``gradkit.optimizers`` (see
  :data:`ENTRY_POINT_GROUP`): the entry point's name is the prefix, its object a module or namespace
  whose attributes are the optimizer classes. In ``pyproject.toml``::

      [project.entry-points."gradkit.optimizers"]
      mylib = "mylib.optim"

Booleans are ``true``/``false``, ``none`` is ``None``, and a word is an identifier-like string
(``mode=sign``); anything else is an error that names the bad part. Unknown names and arguments get
the nearest known one suggested.

>>> parse_spec("adamw:lr=1e-3,betas=0.9/0.95")
Spec(name='adamw', kwargs={'lr': 0.001, 'betas': (0.9, 0.95)}, library=None)
>>> import torch
>>> opt = build_optimizer("torch:SGD:lr=0.1,momentum=0.9", [torch.nn.Parameter(torch.zeros(2))])
>>> type(opt).__name__, opt.defaults["momentum"]
('SGD', 0.9)
"""
from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from gradkit.registry import OPTIMIZERS, UnknownNameError, suggestion

__all__ = ["ENTRY_POINT_GROUP", "LIBRARY_MODULES", "Spec", "build_optimizer", "format_value", "optimizer_libraries",
           "parse_spec", "parse_sweep", "parse_value", "resolve_optimizer"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

#: The libraries ``--opt LIBRARY:NAME`` knows without an entry point: prefix -> module.
LIBRARY_MODULES = {"torch": "torch.optim", "pytorch_optimizer": "pytorch_optimizer", "torchao": "torchao.optim",
                   "bitsandbytes": "bitsandbytes.optim"}
#: Installed packages add libraries by declaring an entry point in this group (name: the prefix).
ENTRY_POINT_GROUP = "gradkit.optimizers"


@dataclass(frozen=True)
class Spec:
    """A parsed spec: ``library`` is None for gradkit's own registry."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    library: str | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.library}:{self.name}" if self.library else self.name

    def with_kwargs(self, **overrides: Any) -> "Spec":
        return Spec(self.name, {**self.kwargs, **overrides}, self.library)

    def __str__(self) -> str:
        if not self.kwargs:
            return self.qualified_name
        args = ",".join(f"{k}={format_value(v)}" for k, v in self.kwargs.items())
        return f"{self.qualified_name}:{args}"


def format_value(value: Any) -> str:
    """The inverse of :func:`parse_value` (``parse_value(format_value(v)) == v``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return "/".join(format_value(v) for v in value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def _parse_scalar(text: str, where: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    if low in ("inf", "+inf", "-inf", "nan"):
        return float(low)
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    if _WORD.match(text) and not text[0].isdigit():
        return text
    raise ValueError(
        f"{where}: cannot parse value {text!r}; values are int, float, true/false, none, "
        "a '/'-separated tuple (betas=0.9/0.999) or a word of letters, digits, '_' and '-'"
    )


def parse_value(text: str, where: str = "value") -> Any:
    """``"3"`` -> 3, ``"1e-3"`` -> 0.001, ``"true"`` -> True, ``"0.9/0.99"`` -> (0.9, 0.99)."""
    if text == "":
        raise ValueError(f"{where}: empty value")
    if "/" in text:
        parts = text.split("/")
        if any(p == "" for p in parts):
            raise ValueError(f"{where}: empty element in tuple {text!r}")
        return tuple(_parse_scalar(p, where) for p in parts)
    return _parse_scalar(text, where)


def _parse_args(text: str, spec_text: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in text.split(","):
        if "=" not in item:
            raise ValueError(f"spec {spec_text!r}: argument {item!r} is not key=value")
        key, value = item.split("=", 1)
        if not _KEY.match(key):
            raise ValueError(f"spec {spec_text!r}: argument name {key!r} is not an identifier")
        if key in kwargs:
            raise ValueError(f"spec {spec_text!r}: argument {key!r} is given twice")
        kwargs[key] = parse_value(value, f"spec {spec_text!r}, argument {key!r}")
    return kwargs


def parse_spec(text: str) -> Spec:
    """Parse ``adamw:lr=1e-3,betas=0.9/0.95`` or ``torch:AdamW:lr=1e-3`` (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"spec must be a string, got {type(text).__name__}")
    if text == "" or text != text.strip() or " " in text:
        raise ValueError(f"spec {text!r}: expected name[:key=value,...] without spaces")
    parts = text.split(":")
    # A second part without '=' is a name, so the first part was a library prefix.
    if len(parts) >= 2 and parts[1] != "" and "=" not in parts[1]:
        library, name, rest = parts[0], parts[1], parts[2:]
        if not _NAME.match(library):
            raise ValueError(f"spec {text!r}: library {library!r} is not a module name")
    else:
        library, name, rest = None, parts[0], parts[1:]
    if len(rest) > 1:
        raise ValueError(f"spec {text!r}: too many ':'; expected [library:]name[:key=value,...]")
    if not _NAME.match(name):
        raise ValueError(f"spec {text!r}: name {name!r} must start with a letter and contain letters, digits, '_', '-' or '.'")
    kwargs = _parse_args(rest[0], text) if rest and rest[0] != "" else {}
    if rest and rest[0] == "":
        raise ValueError(f"spec {text!r}: nothing after ':'")
    return Spec(name, kwargs, library)


def parse_sweep(texts: list[str] | tuple[str, ...]) -> dict[str, list[Any]]:
    """``["lr=3e-4,1e-3", "weight_decay=0/0.1"]``-style sweep axes -> ``{"lr": [3e-4, 1e-3], ...}``.

    Each axis is ``key=v1,v2,...``; the sweep is the grid over all axes.
    """
    axes: dict[str, list[Any]] = {}
    for text in texts:
        if "=" not in text:
            raise ValueError(f"sweep {text!r}: expected key=value1,value2,...")
        key, values = text.split("=", 1)
        if not _KEY.match(key):
            raise ValueError(f"sweep {text!r}: {key!r} is not an identifier")
        if key in axes:
            raise ValueError(f"sweep {text!r}: {key!r} is swept twice")
        parsed = [parse_value(v, f"sweep {key!r}") for v in values.split(",")]
        if len(set(map(repr, parsed))) != len(parsed):
            raise ValueError(f"sweep {text!r}: repeated values")
        axes[key] = parsed
    return axes


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def optimizer_libraries() -> list[str]:
    """The prefixes ``--opt LIBRARY:NAME`` accepts: the built-in ones and the installed entry points."""
    return sorted({*LIBRARY_MODULES, *_entry_points()})


def _library(spec: Spec) -> tuple[Any, str]:
    """The namespace holding ``spec``'s optimizer class, and its name for messages. Only the modules of
    :data:`LIBRARY_MODULES` and the installed entry points are ever imported."""
    prefix = spec.library
    if prefix in LIBRARY_MODULES:
        module_name = LIBRARY_MODULES[prefix]
        try:
            return importlib.import_module(module_name), module_name
        except ImportError:
            raise ValueError(f"optimizer spec {str(spec)!r}: library {prefix!r} is not installed "
                             f"(pip install {prefix.replace('_', '-')})") from None
    entry_points = _entry_points()
    if prefix in entry_points:
        entry_point = entry_points[prefix]
        try:
            return entry_point.load(), entry_point.value
        except ImportError as err:
            raise ValueError(f"optimizer spec {str(spec)!r}: library {prefix!r} (entry point {entry_point.value!r} "
                             f"of the group {ENTRY_POINT_GROUP!r}) failed to import: {err}") from None
    known = optimizer_libraries()
    hint = f"; if {spec.name!r} was meant as an argument, write {spec.name}=VALUE" if not spec.kwargs else ""
    raise UnknownNameError(
        f"optimizer spec {str(spec)!r}: unknown library {prefix!r}{suggestion(prefix, known)}; libraries: "
        f"{', '.join(known)} (others declare an entry point in the group {ENTRY_POINT_GROUP!r}){hint}")


def resolve_optimizer(spec: Spec) -> Callable:
    """The factory ``factory(params, **kwargs)`` that builds ``spec``'s optimizer (nothing is built)."""
    import torch

    if spec.library is None:
        try:
            return OPTIMIZERS.get(spec.name)
        except UnknownNameError as err:
            raise UnknownNameError(f"optimizer spec {str(spec)!r}: {err}; other libraries by prefix, e.g. "
                                   "torch:AdamW") from None
    namespace, where = _library(spec)
    factory = None if spec.name.startswith("_") else getattr(namespace, spec.name, None)
    if not (isinstance(factory, type) and issubclass(factory, torch.optim.Optimizer)):
        classes = {n: getattr(namespace, n, None) for n in dir(namespace) if not n.startswith("_")}
        names = [n for n, v in classes.items() if isinstance(v, type) and issubclass(v, torch.optim.Optimizer)]
        raise ValueError(f"optimizer spec {str(spec)!r}: {where}.{spec.name} is not a torch.optim.Optimizer class"
                         f"{suggestion(spec.name, names)}")
    return factory


def _as_spec(spec: Any) -> tuple[Spec | None, Callable | None]:
    if isinstance(spec, Spec):
        return spec, None
    if isinstance(spec, str):
        return parse_spec(spec), None
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], dict):
        return parse_spec(spec[0]).with_kwargs(**spec[1]), None
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        return parse_spec(spec["name"]).with_kwargs(**{k: v for k, v in spec.items() if k != "name"}), None
    if callable(spec):
        return None, spec
    raise TypeError("optimizer spec must be a string 'name:key=value,...', a Spec, a (name, kwargs) pair, a "
                    f"{{'name': ..., **kwargs}} dict or a factory params -> optimizer, got {type(spec).__name__}")


def _check_arguments(spec: Spec, factory: Callable, kwargs: dict[str, Any]) -> None:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    known = [n for n, p in parameters.items() if n not in ("self", "params")
             and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for key in kwargs:
        if key not in known:
            raise ValueError(f"optimizer spec {str(spec)!r}: unknown argument {key!r}{suggestion(key, known)}; "
                             f"{getattr(factory, '__name__', spec.name)} takes: {', '.join(known)}")


def build_optimizer(spec: str | Spec | tuple | dict | Callable, params: Iterable, **overrides: Any):
    """Build the optimizer ``spec`` names over ``params``: the one way specs become optimizers.

    Args:
        spec: a spec string (``"adamw:lr=1e-3"``, ``"torch:SGD:momentum=0.9"``), a parsed :class:`Spec`,
            ``(name, kwargs)``, ``{"name": ..., **kwargs}`` or a factory ``params -> optimizer``.
        params: parameters, param groups, or (name, parameter) pairs. gradkit's optimizers get the names
            (Muon and the low-rank family route embeddings, heads and norms by name); other libraries get
            the tensors only.
        overrides: arguments that replace the spec's own (a sweep point). A value that the optimizer
            rejects is named as ``key=value`` in the error, so a swept value is reported as the user typed it.

    Unknown names and arguments are errors naming the nearest known one; an argument the optimizer
    rejects keeps its exception type (ValueError or TypeError), with the spec and the argument named.

    >>> import torch
    >>> p = [torch.nn.Parameter(torch.zeros(2))]
    >>> build_optimizer("adamw", p, lr=0.01).defaults["lr"]
    0.01
    >>> build_optimizer("adamw:lrr=0.1", p)
    Traceback (most recent call last):
    ...
    ValueError: optimizer spec 'adamw:lrr=0.1': unknown argument 'lrr' (did you mean 'lr'?); AdamW takes: ...
    """
    parsed, factory = _as_spec(spec)
    if factory is not None:
        if overrides:
            raise TypeError("keyword arguments are only taken with an optimizer spec, not with a factory")
        return factory(params)
    factory = resolve_optimizer(parsed)
    kwargs = {**parsed.kwargs, **overrides}
    _check_arguments(parsed, factory, kwargs)
    params = list(params)
    if parsed.library is not None:
        params = [p[1] if isinstance(p, tuple) else p for p in params]
    try:
        return factory(params, **kwargs)
    except (TypeError, ValueError) as err:
        named = [k for k in kwargs if re.search(rf"\b{re.escape(k)}\b", str(err))] or list(overrides)
        shown = "".join(f", {k}={format_value(kwargs[k])}" for k in named if k in overrides)
        kind = TypeError if isinstance(err, TypeError) else ValueError
        raise kind(f"optimizer spec {str(parsed)!r}{shown}: {err}") from None
