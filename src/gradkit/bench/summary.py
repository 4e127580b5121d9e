"""From runs to a ranking: one row per contestant of a task, over its selected runs (all seeds)."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from .results import BenchResults, RunRecord
from .spec import format_value

__all__ = ["Row", "rank", "format_bytes", "format_seconds", "format_hparams", "text_table"]


@dataclass
class Row:
    contestant: str
    hparams: dict[str, Any]
    runs: int
    ok: int
    diverged: int
    errors: int
    val_metric: tuple[float, float] | None  # (mean, std over seeds)
    val_loss: tuple[float, float] | None
    train_loss: float | None
    train_metric: float | None
    state_bytes: int | None
    step_time_s: float | None
    wall_s: float | None
    peak_rss_bytes: int | None
    peak_cuda_bytes: int | None
    extras: dict[str, float] = field(default_factory=dict)  # other validation metrics, mean over seeds
    conflict_fraction: float | None = None  # multi-task runs: mean share of conflicting gradient pairs

    @property
    def status(self) -> str:
        if self.ok == self.runs:
            return "ok"
        parts = []
        if self.diverged:
            parts.append(f"{self.diverged}/{self.runs} diverged")
        if self.errors:
            parts.append(f"{self.errors}/{self.runs} failed")
        return ", ".join(parts)


def _mean_std(values: list[float]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _mean(values) -> float | None:
    ms = _mean_std(list(values))
    return None if ms is None else ms[0]


def _max(values) -> int | None:
    values = [v for v in values if v is not None]
    return max(values) if values else None


def rank(results: BenchResults, task: str) -> list[Row]:
    """Rows for ``task``, best first; contestants whose runs all failed come last."""
    info = results.tasks[task]
    by_contestant: dict[str, list[RunRecord]] = {}
    swept: dict[str, list[RunRecord]] = {}
    for run in results.runs:
        if run.task != task:
            continue
        swept.setdefault(run.contestant, []).append(run)
        if run.selected:
            by_contestant.setdefault(run.contestant, []).append(run)
    rows = []
    for contestant, all_runs in swept.items():
        runs = by_contestant.get(contestant)
        if not runs:  # every sweep point failed: report them all as the contestant's runs
            runs = all_runs
        ok = [r for r in runs if r.status == "ok"]
        extras_keys = sorted({k for r in ok for k in r.final_val if k not in ("loss", "metric")})
        rows.append(Row(
            contestant=contestant,
            hparams=runs[0].hparams if by_contestant.get(contestant) else {},
            runs=len(runs), ok=len(ok),
            diverged=sum(r.status == "diverged" for r in runs), errors=sum(r.status == "error" for r in runs),
            val_metric=_mean_std([r.final_val.get("metric") for r in ok]),
            val_loss=_mean_std([r.final_val.get("loss") for r in ok]),
            train_loss=_mean(r.final_train.get("loss") for r in ok),
            train_metric=_mean(r.final_train.get("metric") for r in ok),
            state_bytes=_max(r.state_bytes for r in runs),
            step_time_s=statistics.median([r.step_time_median_s for r in runs if r.step_time_median_s is not None] or [math.nan]),
            wall_s=_mean(r.wall_s for r in ok),
            peak_rss_bytes=_max(r.peak_rss_bytes for r in runs),
            peak_cuda_bytes=_max(r.peak_cuda_bytes for r in runs),
            extras={k: _mean(r.final_val.get(k) for r in ok) for k in extras_keys},
            conflict_fraction=_mean(r.conflict_fraction for r in ok),
        ))
    sign = 1.0 if info.higher_is_better else -1.0
    rows.sort(key=lambda row: (row.val_metric is None, -sign * row.val_metric[0] if row.val_metric else 0.0,
                               row.val_loss[0] if row.val_loss else 0.0))
    return rows


def format_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def format_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.1f} s"


def format_hparams(hparams: dict[str, Any]) -> str:
    return ",".join(f"{k}={format_value(tuple(v) if isinstance(v, list) else v)}" for k, v in hparams.items()) or "-"


def _pm(ms: tuple[float, float] | None, runs: int, digits: int = 4) -> str:
    if ms is None:
        return "-"
    mean, std = ms
    return f"{mean:.{digits}f}" if runs <= 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def table_rows(rows: list[Row], info, with_rss: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the ranking table (shared by the terminal and the Markdown report)."""
    extras = sorted({k for r in rows for k in r.extras})
    header = ["#", "optimizer", "swept", f"val {info.metric}", "val loss", "train loss", f"train {info.metric}",
              *[f"val {k}" for k in extras]]
    conflicts = any(r.conflict_fraction is not None for r in rows)
    if conflicts:
        header.append("conflicting pairs")
    header += ["state", "step (median)", "train time"]
    if with_rss:
        header.append("peak RSS")
    if any(r.peak_cuda_bytes for r in rows):
        header.append("peak CUDA")
    header.append("status")
    body = []
    for i, r in enumerate(rows, 1):
        n = r.ok
        cells = [str(i), r.contestant, format_hparams(r.hparams), _pm(r.val_metric, n), _pm(r.val_loss, n),
                 "-" if r.train_loss is None else f"{r.train_loss:.4f}",
                 "-" if r.train_metric is None else f"{r.train_metric:.4f}",
                 *["-" if r.extras.get(k) is None else f"{r.extras[k]:.4f}" for k in extras]]
        if conflicts:
            cells.append("-" if r.conflict_fraction is None else f"{r.conflict_fraction:.0%}")
        cells += [format_bytes(r.state_bytes), format_seconds(r.step_time_s), format_seconds(r.wall_s)]
        if with_rss:
            cells.append(format_bytes(r.peak_rss_bytes))
        if any(x.peak_cuda_bytes for x in rows):
            cells.append(format_bytes(r.peak_cuda_bytes))
        cells.append(r.status)
        body.append(cells)
    return header, body


def text_table(header: list[str], body: list[list[str]]) -> str:
    """A plain aligned table for the terminal."""
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(line.rstrip() for line in lines)
