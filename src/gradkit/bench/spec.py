"""Specs: the ``name:key=value,...`` strings that pick optimizers, aggregators and tasks.

Grammar (whitespace is not allowed)::

    spec    := [library ":"] name [":" args]
    args    := key "=" value ("," key "=" value)*
    value   := int | float | bool | none | tuple | word
    tuple   := value "/" value ("/" value)*      e.g. betas=0.9/0.999

``library`` selects an optimizer from another package: ``torch:AdamW`` is ``torch.optim.AdamW``,
``pytorch_optimizer:Adan`` is ``pytorch_optimizer.Adan``; any importable module whose attribute is a
``torch.optim.Optimizer`` subclass works (``adamp:AdamP``). Without a library, the name is looked up
in gradkit's registry. Booleans are ``true``/``false``, ``none`` is ``None``, and a word is an
identifier-like string (``mode=sign``); anything else is an error that names the bad part.
"""
from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Spec", "parse_spec", "parse_value", "parse_sweep", "format_value", "resolve_optimizer"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

# Short library prefixes; any other prefix is imported as a module name.
LIBRARY_MODULES = {"torch": "torch.optim"}


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


def resolve_optimizer(spec: Spec) -> Callable:
    """The factory ``factory(params, **kwargs)`` that builds ``spec``'s optimizer."""
    import torch

    if spec.library is None:
        from gradkit.registry import get_optimizer

        try:
            return get_optimizer(spec.name)
        except KeyError as err:
            raise ValueError(f"optimizer spec {str(spec)!r}: {err.args[0]}; other libraries by prefix, e.g. torch:AdamW") from None
    module_name = LIBRARY_MODULES.get(spec.library, spec.library)
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        hint = f"; if {spec.name!r} was meant as an argument, write {spec.name}=VALUE" if not spec.kwargs else ""
        raise ValueError(f"optimizer spec {str(spec)!r}: library {spec.library!r} is not installed (module {module_name!r}){hint}") from None
    factory = getattr(module, spec.name, None)
    if not (isinstance(factory, type) and issubclass(factory, torch.optim.Optimizer)):
        raise ValueError(f"optimizer spec {str(spec)!r}: {module_name}.{spec.name} is not a torch.optim.Optimizer class")
    return factory
