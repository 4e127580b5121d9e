"""The arena's tasks by name: ``--task NAME[:option=value,...]`` looks tasks up in ``gradkit.registry.TASKS``."""
from __future__ import annotations

from typing import Any

from gradkit.registry import TASKS
from gradkit.spec import Spec, parse_spec

from .base import Task

__all__ = ["register_task", "get_task", "make_task", "list_tasks"]


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` available by its ``name`` after checking it declares what the arena reads."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"task class {cls.__name__} needs a non-empty string attribute 'name'")
    for attr in ("summary", "metric", "higher_is_better"):
        if not hasattr(cls, attr):
            raise ValueError(f"task {name!r} must define {attr!r}")
    missing = {"steps", "eval_every", "batch_size"} - set(cls.defaults)
    if missing:
        raise ValueError(f"task {name!r}: defaults lack {sorted(missing)}")
    return TASKS.register(name, cls, summary=cls.summary)


def list_tasks() -> list[type[Task]]:
    """Every registered task class, sorted by name."""
    return [entry.obj for entry in TASKS.entries()]


def get_task(name: str) -> type[Task]:
    """The task class called ``name``; an unknown name lists the tasks and suggests the nearest."""
    return TASKS.get(name)


def make_task(spec: str | Spec, **overrides: Any) -> Task:
    """Build a task from ``"digits-mlp:hidden=128"`` (or a parsed :class:`Spec`).

    ``overrides`` (e.g. ``steps=100`` from the command line) win over the spec's own options.
    """
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed.library is not None:
        raise ValueError(f"task spec {str(parsed)!r}: tasks take no library prefix; tasks: {', '.join(TASKS.names())}")
    cls = get_task(parsed.name)
    return cls(**{**parsed.kwargs, **{k: v for k, v in overrides.items() if v is not None}})
