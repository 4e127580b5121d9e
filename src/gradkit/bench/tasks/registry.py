"""The task registry: ``--task NAME[:option=value,...]`` looks tasks up here."""
from __future__ import annotations

from typing import Any

from ..spec import Spec, parse_spec
from .base import Task

__all__ = ["register_task", "get_task", "make_task", "list_tasks"]

_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` available by its ``name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"task class {cls.__name__} needs a non-empty string attribute 'name'")
    if name in _TASKS and _TASKS[name] is not cls:
        raise ValueError(f"task {name!r} is already registered to {_TASKS[name].__name__}")
    for attr in ("summary", "metric", "higher_is_better"):
        if not hasattr(cls, attr):
            raise ValueError(f"task {name!r} must define {attr!r}")
    missing = {"steps", "eval_every", "batch_size"} - set(cls.defaults)
    if missing:
        raise ValueError(f"task {name!r}: defaults lack {sorted(missing)}")
    _TASKS[name] = cls
    return cls


def list_tasks() -> list[type[Task]]:
    return [_TASKS[n] for n in sorted(_TASKS)]


def get_task(name: str) -> type[Task]:
    try:
        return _TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(sorted(_TASKS))}") from None


def make_task(spec: str | Spec, **overrides: Any) -> Task:
    """Build a task from ``"digits-mlp:hidden=128"`` (or a parsed :class:`Spec`).

    ``overrides`` (e.g. ``steps=100`` from the command line) win over the spec's own options.
    """
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed.library is not None:
        raise ValueError(f"task spec {str(parsed)!r}: tasks take no library prefix; tasks: {', '.join(sorted(_TASKS))}")
    cls = get_task(parsed.name)
    return cls(**{**parsed.kwargs, **{k: v for k, v in overrides.items() if v is not None}})
