"""The arena: compare optimizers (gradkit's and other libraries') on real tasks, fairly and reproducibly.

``gradkit bench`` is the command-line front end; the same pieces are usable from Python::

    from gradkit.bench import BenchConfig, run_bench, render_report
    results = run_bench(BenchConfig(tasks=["digits-mlp"], optimizers=["torch:AdamW", "torch:SGD:lr=0.1"]))
    render_report(results, "runs/mine")
"""
from __future__ import annotations

from .defaults import DEFAULT_OPTIMIZERS, DEFAULT_SEEDS, DEFAULT_TASKS
from .measure import state_bytes
from .report import markdown_report, render_report, terminal_summary
from .results import SCHEMA, SCHEMA_VERSION, BenchResults, RunRecord, TaskInfo, load_results
from .runner import BenchConfig, Contestant, build_optimizer, run_bench, run_one, select_best
from .spec import Spec, parse_spec, parse_sweep, parse_value
from .summary import Row, rank
from .tasks import Task, get_task, list_tasks, make_task, register_task

__all__ = [
    "BenchConfig", "BenchResults", "Contestant", "DEFAULT_OPTIMIZERS", "DEFAULT_SEEDS", "DEFAULT_TASKS",
    "Row", "RunRecord", "SCHEMA", "SCHEMA_VERSION", "Spec", "Task", "TaskInfo", "build_optimizer", "get_task",
    "list_tasks", "load_results", "make_task", "markdown_report", "parse_spec", "parse_sweep", "parse_value",
    "rank", "register_task", "render_report", "run_bench", "run_one", "select_best", "state_bytes",
    "terminal_summary",
]
