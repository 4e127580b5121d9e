"""The report's figures (matplotlib, written as small PNGs)."""
from __future__ import annotations

import math
from pathlib import Path

from .results import BenchResults, RunRecord
from .summary import Row

__all__ = ["plot_task"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")


def _styles(names: list[str]) -> dict[str, dict]:
    """A colour and a marker of its own for every series (colours repeat only beyond 20 series)."""
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: {"color": cmap(i % cmap.N), "marker": _MARKERS[i % len(_MARKERS)]} for i, name in enumerate(names)}


def _twins(curves: dict[str, list[RunRecord]]) -> dict[str, str]:
    """{contestant: earlier contestant} for curves identical to an earlier one (e.g. gradkit's SGD and
    torch.optim.SGD, equal by design): drawn dashed over it and named in the legend, so neither hides."""
    twins: dict[str, str] = {}
    seen: list[tuple[str, list]] = []
    for name, runs in curves.items():
        key = [(r.seed, r.train_loss, [e["val"] for e in r.evals]) for r in sorted(runs, key=lambda r: r.seed)]
        if runs and all(r.train_loss for r in runs):
            match = next((other for other, other_key in seen if other_key == key), None)
            if match is not None:
                twins[name] = match
                continue
        seen.append((name, key))
    return twins


def _label(name: str, twins: dict[str, str]) -> str:
    return f"{name} (identical to {twins[name]})" if name in twins else name


def _curves(results: BenchResults, task: str, rows: list[Row]) -> dict[str, list[RunRecord]]:
    """For each ranked contestant, the runs to draw: its selected runs that finished, else all selected."""
    out = {}
    for row in rows:
        runs = [r for r in results.runs if r.task == task and r.contestant == row.contestant and r.selected]
        ok = [r for r in runs if r.status == "ok"]
        out[row.contestant] = ok or runs
    return out


def _mean_columns(columns: list[list[float | None]]) -> list[float]:
    n = min(len(c) for c in columns)
    means = []
    for i in range(n):
        vals = [c[i] for c in columns if c[i] is not None and math.isfinite(c[i])]
        means.append(sum(vals) / len(vals) if vals else math.nan)
    return means


def _ema(values: list[float], beta: float = 0.9) -> list[float]:
    out, avg = [], None
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(math.nan)
            continue
        avg = v if avg is None else beta * avg + (1 - beta) * v
        out.append(avg)
    return out


def _log_scale_ok(values) -> bool:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 20


def plot_task(results: BenchResults, task: str, rows: list[Row], out_dir: Path, prefix: str = "",
              stem: str | None = None) -> list[Path]:
    """Write the task's figures directly into ``out_dir``; returns their paths.

    File names are ``{prefix}{stem}_*.png``; ``stem`` defaults to the task name made safe as one path
    component (:func:`gradkit.bench.rundir.safe_filename`), so nothing is written elsewhere.
    """
    from .rundir import safe_filename

    plt = _pyplot()
    info = results.tasks[task]
    curves = _curves(results, task, rows)
    styles = _styles(list(curves))
    colors = {name: style["color"] for name, style in styles.items()}
    twins = _twins(curves)
    written = []
    stem = safe_filename(f"{prefix}{stem if stem is not None else task}")
    every = max(1, (info.steps or 1) // 10)  # markers on the dense training curve: about ten per series

    def line(name: str) -> dict:
        twin = name in twins
        return {"color": colors[name], "marker": styles[name]["marker"], "ms": 4 if not twin else 6,
                "ls": (0, (4, 3)) if twin else "-", "lw": 1.2, "mfc": "none" if twin else colors[name],
                "label": _label(name, twins)}

    # Loss and metric against steps.
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.8))
    all_losses = []
    for name, runs in curves.items():
        if not runs:
            continue
        train = _ema(_mean_columns([r.train_loss for r in runs]))
        axes[0].plot(range(1, len(train) + 1), train, markevery=every, **line(name))
        all_losses += train
        evals = [r.evals for r in runs if r.evals]
        if evals:
            n = min(len(e) for e in evals)
            steps = [e["step"] for e in evals[0][:n]]
            val = _mean_columns([[e["val"]["loss"] for e in ev[:n]] for ev in evals])
            metric = _mean_columns([[e["val"]["metric"] for e in ev[:n]] for ev in evals])
            axes[1].plot(steps, val, **line(name))
            axes[2].plot(steps, metric, **line(name))
            all_losses += val
    axes[0].set_title("training loss (EMA 0.9, mean over seeds)")
    axes[1].set_title("validation loss")
    axes[2].set_title(f"validation {info.metric} ({'higher' if info.higher_is_better else 'lower'} is better)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if _log_scale_ok(all_losses):
        axes[0].set_yscale("log")
        axes[1].set_yscale("log")
    fig.suptitle(f"{task}: loss and {info.metric} against steps", fontsize=11)
    fig.tight_layout()
    _legend(fig, axes[0])
    written.append(_save(fig, out_dir / f"{stem}_loss_vs_step.png"))

    # Validation loss against training wall-clock (evaluation excluded).
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, runs in curves.items():
        evals = [r.evals for r in runs if r.evals]
        if not evals:
            continue
        n = min(len(e) for e in evals)
        wall = _mean_columns([[e["wall_s"] for e in ev[:n]] for ev in evals])
        val = _mean_columns([[e["val"]["loss"] for e in ev[:n]] for ev in evals])
        ax.plot(wall, val, **line(name))
    ax.set_xlabel("training wall-clock (s, evaluation excluded)")
    ax.set_ylabel("validation loss")
    ax.set_title(f"{task}: validation loss against time", fontsize=11)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _legend(fig, ax)
    written.append(_save(fig, out_dir / f"{stem}_loss_vs_time.png"))

    # Optimizer state memory.
    named = [(row.contestant, row.state_bytes or 0) for row in rows]
    unit, scale = ("MiB", 2**20) if max((b for _, b in named), default=0) >= 10 * 2**20 else ("KiB", 2**10)
    fig, ax = plt.subplots(figsize=(7.5, 1.0 + 0.3 * len(named)))
    ax.barh([n for n, _ in named], [b / scale for _, b in named], color=[colors[n] for n, _ in named])
    ax.axvline(info.num_params * 4 / scale, color="grey", ls="--", lw=1, label="parameters in fp32")
    ax.invert_yaxis()
    ax.set_xlabel(f"optimizer state ({unit})")
    ax.set_title(f"{task}: optimizer state memory ({info.num_params:,} parameters)", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    _legend(fig, ax)
    written.append(_save(fig, out_dir / f"{stem}_state_memory.png"))

    # Trajectories of the 2-D toy problems.
    if info.surface is not None and any(r.trajectory for runs in curves.values() for r in runs):
        import numpy as np

        s = info.surface
        z = np.asarray(s["z"], dtype=float)
        fig, ax = plt.subplots(figsize=(6.5, 5.5))
        ax.contour(s["x"], s["y"], np.log10(z - z.min() + 1e-3), levels=20, cmap="Greys", linewidths=0.6)
        for name, runs in curves.items():
            run = next((r for r in runs if r.trajectory), None)
            if run is None:
                continue
            pts = np.asarray([p for p in run.trajectory if all(map(math.isfinite, p))])
            ax.plot(pts[:, 0], pts[:, 1], markevery=max(1, len(pts) // 10), **line(name))
        ax.plot(*s["optimum"], marker="*", color="black", ms=12, ls="none", label="optimum")
        ax.set_xlim(min(s["x"]), max(s["x"]))
        ax.set_ylim(min(s["y"]), max(s["y"]))
        ax.set_title(f"{task}: trajectories (seed 0)", fontsize=11)
        fig.tight_layout()
        _legend(fig, ax)
        written.append(_save(fig, out_dir / f"{stem}_trajectories.png"))
    return written


def _legend(fig, ax) -> None:
    # One column beside the figure, where it hides no data (savefig's tight box makes room for it).
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5),
               frameon=False)


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
