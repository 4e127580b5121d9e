"""The arena: compare optimizers (gradkit's and other libraries') on real tasks, fairly and reproducibly.

``gradkit bench`` is the command-line front end; the same pieces are usable from Python::

    from gradkit.bench import BenchConfig, run_bench, render_report
    results = run_bench(BenchConfig(tasks=["digits-mlp"], optimizers=["torch:AdamW", "torch:SGD:lr=0.1"]))
    render_report(results, "runs/mine")
"""
from __future__ import annotations

import importlib

from .defaults import DEFAULT_OPTIMIZERS, DEFAULT_SEEDS, DEFAULT_TASKS

# The engine (torch, the tasks, matplotlib) loads on first use, so `gradkit --help` and
# `gradkit bench --help` stay light.
_EXPORTS = {
    "state_bytes": "measure",
    **dict.fromkeys(("markdown_report", "render_report", "terminal_summary"), "report"),
    **dict.fromkeys(("SCHEMA", "SCHEMA_VERSION", "BenchResults", "RunRecord", "TaskInfo", "load_results"), "results"),
    **dict.fromkeys(("BenchConfig", "Contestant", "build_optimizer", "run_bench", "run_one", "select_best"), "runner"),
    **dict.fromkeys(("Spec", "parse_spec", "parse_sweep", "parse_value"), "spec"),
    **dict.fromkeys(("Row", "rank"), "summary"),
    **dict.fromkeys(("Task", "get_task", "list_tasks", "make_task", "register_task"), "tasks"),
}

__all__ = [
    "BenchConfig", "BenchResults", "Contestant", "DEFAULT_OPTIMIZERS", "DEFAULT_SEEDS", "DEFAULT_TASKS",
    "Row", "RunRecord", "SCHEMA", "SCHEMA_VERSION", "Spec", "Task", "TaskInfo", "build_optimizer", "get_task",
    "list_tasks", "load_results", "make_task", "markdown_report", "parse_spec", "parse_sweep", "parse_value",
    "rank", "register_task", "render_report", "run_bench", "run_one", "select_best", "state_bytes",
    "terminal_summary",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
