"""``results.json``: what a bench run measured, in a documented, versioned schema.

Schema ``gradkit.bench.results`` version 1 (the full field list is in docs/bench.md)::

    {"schema": "gradkit.bench.results", "version": 1,
     "name", "command", "created", "status": "running" | "complete" | "interrupted",
     "environment": {"gradkit", "torch", "python", "platform", "device", "threads"},
     "config": {"tasks": [spec], "optimizers": [spec], "aggregators": [spec], "sweep": {key: [values]},
                "seeds": [int], "device", "divergence_factor"},
     "tasks": {name: TaskInfo},
     "runs": [RunRecord, ...]}

Floats that are not finite (a diverged loss) are written as ``null``. Readers must reject a
``version`` newer than they know; :func:`BenchResults.from_dict` does, and checks every field's type,
naming the first bad one.

``status`` is ``"running"`` from the first save until the whole bench has finished (``"complete"``)
or stopped on a signal (``"interrupted"``). A process killed outright (SIGKILL, power loss) leaves
``"running"``; :func:`load_results` reads such a file as ``"interrupted"`` when no process holds the
run directory's lock any more. Every save writes a fresh temporary file in the same directory and
renames it over ``results.json``, so a reader never sees half a file.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA", "SCHEMA_VERSION", "TaskInfo", "RunRecord", "BenchResults", "load_results"]

SCHEMA = "gradkit.bench.results"
SCHEMA_VERSION = 1
STATUSES = ("ok", "diverged", "error")
BENCH_STATUSES = ("running", "complete", "interrupted")


@dataclass
class TaskInfo:
    spec: str
    summary: str
    metric: str
    higher_is_better: bool
    steps: int
    eval_every: int
    batch_size: int
    num_params: int
    loss_names: list[str]
    surface: dict[str, Any] | None = None  # 2-D toy problems: contour grid and optimum


@dataclass
class RunRecord:
    """One training run: one task, one optimizer (and aggregator), one hyperparameter point, one seed."""

    task: str
    contestant: str  # what the report ranks: the optimizer spec, plus "+aggregator" for multi-task runs
    optimizer: str  # the spec as given on the command line
    aggregator: str | None
    hparams: dict[str, Any]  # the swept values of this run ({} without a sweep)
    seed: int
    status: str  # "ok", "diverged" or "error"
    steps_done: int
    diverged_step: int | None = None
    error: str | None = None
    final_train: dict[str, float | None] = field(default_factory=dict)
    final_val: dict[str, float | None] = field(default_factory=dict)
    step_time_median_s: float | None = None  # optimizer.step() alone
    wall_s: float = 0.0  # training loop, evaluation excluded
    state_bytes: int | None = None
    peak_rss_bytes: int | None = None
    peak_cuda_bytes: int | None = None
    conflict_fraction: float | None = None  # multi-task: mean fraction of gradient pairs with negative inner product
    selected: bool = False  # part of the hyperparameter point the sweep chose for this contestant
    train_loss: list[float | None] = field(default_factory=list)  # every step
    evals: list[dict[str, Any]] = field(default_factory=list)  # {"step", "wall_s", "train": {...}, "val": {...}}
    trajectory: list[list[float]] | None = None  # 2-D toy problems: the point after every step, start first

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


@dataclass
class BenchResults:
    name: str
    command: str
    created: str
    environment: dict[str, Any]
    config: dict[str, Any]
    tasks: dict[str, TaskInfo] = field(default_factory=dict)
    runs: list[RunRecord] = field(default_factory=list)
    status: str = "running"
    schema: str = SCHEMA
    version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    def save(self, path: str | Path) -> Path:
        """Write atomically: a uniquely named temporary file beside ``path``, then ``os.replace``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = self.to_json()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchResults":
        """Build from parsed JSON; a ValueError names the first field that is missing or of the wrong type."""
        from ._validate import check_results

        check_results(data)
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["tasks"] = {name: TaskInfo(**_known(TaskInfo, info)) for name, info in data.get("tasks", {}).items()}
        kwargs["runs"] = [RunRecord(**_known(RunRecord, run)) for run in data.get("runs", [])]
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> "BenchResults":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
        except RecursionError:
            raise ValueError("not a results file: JSON nested too deeply") from None
        return cls.from_dict(data)


def load_results(path: str | Path) -> BenchResults:
    """Read ``results.json`` (or the ``results.json`` inside a run directory).

    Any problem with the file is a ValueError of one line that names the file and the bad field. A
    file still marked ``"running"`` whose bench no longer holds the run directory's lock is returned
    with ``status="interrupted"`` (the file itself is left as it is).
    """
    from .rundir import lock_holder_alive

    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path} (give a run directory runs/NAME or its results.json)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
    try:
        results = BenchResults.from_json(text)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if results.status == "running" and not lock_holder_alive(path.parent):
        results.status = "interrupted"
    return results


def _known(cls, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _finite(obj: Any) -> Any:
    # JSON has no NaN/inf; a non-finite number becomes null.
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
