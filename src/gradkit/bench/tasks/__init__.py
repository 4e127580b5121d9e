"""The arena's tasks. Each task is one small module; importing this package registers them all."""
from __future__ import annotations

from .base import Task
from .registry import get_task, list_tasks, make_task, register_task

# Imported for their registration side effect.
from . import digits_mlp, digits_cnn, stdlib_lm, multitask_digits, quadratic, rosenbrock, arrow_pointing  # noqa: E402,F401

__all__ = ["Task", "register_task", "get_task", "make_task", "list_tasks"]
