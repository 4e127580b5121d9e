"""PNG plots of inspection logs (matplotlib's Agg canvas; no global backend is changed).

``plot_log`` writes one figure per quantity found in a log; ``plot_runs`` overlays several runs
(e.g. SGD and SGDP) for one quantity; ``plot_density`` draws a spectral density.
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["load_log", "plot_quantity", "plot_runs", "plot_log", "plot_density", "QUANTITIES"]

# name -> (title, y label, log scale)
QUANTITIES = {
    "sharpness": ("Top Hessian eigenvalue vs 2/lr", "eigenvalue", False),
    "overlap": ("Gradient overlap with the top-k Hessian eigenspace", "||P_k g||^2 / ||g||^2", False),
    "effective_step": ("Effective step size of scale-invariant weights", "angle between w_t and w_t+1 (rad)", True),
    "weight_norm": ("Norm growth of scale-invariant weights", "||w_t|| / ||w_0||", False),
    "update_ratio": ("Update-to-weight ratio per layer", "||delta w|| / ||w||", True),
    "grad_norm": ("Gradient norm per layer", "||g||", True),
    "trace": ("Hessian trace (Hutchinson, 95% interval)", "tr H", False),
    "noise_scale": ("Simple gradient noise scale", "B_simple", True),
    "loss": ("Loss on the inspection data", "loss", True),
}


def load_log(path: str | Path) -> list[dict]:
    """The records of an Inspector log (JSON lines); a ValueError naming the file and line otherwise."""
    records = []
    try:
        with Path(path).open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as err:
                    reason = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
                    raise ValueError(f"{path}, line {number}: not an Inspector log (JSON lines): {reason}") from None
                if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                    raise ValueError(f"{path}, line {number}: not an Inspector log record (an object with an int 'step')")
                records.append(record)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not an Inspector log (not UTF-8 text)") from None
    return records


def _records(log) -> list[dict]:
    return load_log(log) if isinstance(log, (str, Path)) else list(log)


def _series(records, quantity):
    """[(label suffix, steps, values, extra)] for one quantity; empty when it was not logged."""
    steps = [r["step"] for r in records]
    if quantity == "sharpness":
        if not records or "top_eigenvalues" not in records[0]:
            return []
        return [("lambda_max", steps, [r["top_eigenvalues"][0] for r in records], None)]
    if quantity == "overlap":
        out = []
        for key, name in (("overlap", "inspection-data gradient"), ("minibatch_overlap", "minibatch gradient")):
            pts = [(r["step"], r[key]) for r in records if key in r]
            if pts:
                out.append((name, [p[0] for p in pts], [p[1] for p in pts], None))
        return out
    if quantity in ("effective_step", "weight_norm"):
        key = "effective_step" if quantity == "effective_step" else "scale_invariant_norm_growth"
        if not records or key not in records[0]:
            return []
        return [(name, steps, [r[key][name] for r in records], None) for name in records[0][key]]
    if quantity in ("update_ratio", "grad_norm"):
        if not records or "layers" not in records[0]:
            return []
        names = [n for n in records[0]["layers"] if quantity in records[0]["layers"][n]]
        return [(n, steps, [r["layers"][n].get(quantity, float("nan")) for r in records], None) for n in names]
    if quantity == "trace":
        pts = [r for r in records if "trace" in r]
        if not pts:
            return []
        return [("trace", [r["step"] for r in pts], [r["trace"] for r in pts], [r["trace_interval"] for r in pts])]
    if quantity == "noise_scale":
        pts = [r for r in records if "noise_scale_smoothed" in r]
        return [("B_simple (smoothed)", [r["step"] for r in pts], [r["noise_scale_smoothed"] for r in pts], None)] if pts else []
    if quantity == "loss":
        return [("loss", steps, [r["loss"] for r in records], None)] if records and "loss" in records[0] else []
    raise ValueError(f"quantity must be one of {sorted(QUANTITIES)}, got {quantity!r}")


def _save(fig, ax, path: str | Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Label, grid and legend the axes the same way for every plot, and write the PNG.

    The legend sits beside the axes, where it hides no data (the figure grows to make room).
    """
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  ncol=2 if len(handles) > 16 else 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")


def _style(index: int, total: int) -> dict:
    """A colour and a marker of its own per series (tab20 beyond 10 series; colours repeat only beyond 20)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if total <= 10 else "tab20"]
    return {"color": cmap(index % cmap.N), "marker": _MARKERS[index % len(_MARKERS)]}


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def plot_runs(runs: dict, quantity: str, path: str | Path, *, title: str | None = None) -> Path | None:
    """Overlay ``runs`` ({label: log path or records}) for one quantity; None if nothing was logged."""
    if quantity not in QUANTITIES:
        raise ValueError(f"quantity must be one of {sorted(QUANTITIES)}, got {quantity!r}")
    default_title, ylabel, log_scale = QUANTITIES[quantity]
    fig, ax = _figure()
    drawn = False
    thresholds: dict = {}
    per_run = {label: _series(_records(log), quantity) for label, log in runs.items()}
    total = sum(len(series) for series in per_run.values())
    index = 0
    for run_index, (label, log) in enumerate(runs.items()):
        records = _records(log)
        color = f"C{run_index}"
        series = per_run[label]
        for i, (name, steps, values, extra) in enumerate(series):
            full = label if len(runs) > 1 else name
            if len(series) > 1 and len(runs) > 1:
                full = f"{label}: {name}"
            style = _style(index, total)
            # Overlaid runs: the line style names the series (solid: the first kind, dashed: the second, ...).
            dashes = ("-", "--", ":", "-.")[i % 4] if len(runs) > 1 else "-"
            ax.plot(steps, values, dashes, label=full, markersize=3, markevery=max(1, len(steps) // 12), **style)
            if extra is not None:
                ax.fill_between(steps, [e[0] for e in extra], [e[1] for e in extra], color=style["color"], alpha=0.2)
            drawn = True
            index += 1
        if quantity == "sharpness":
            for key, style, name in (("two_over_lr", ":", "2/lr"), ("momentum_threshold", "-.", "(2+2 momentum)/lr")):
                pts = tuple((r["step"], r[key]) for r in records if key in r)
                if pts and pts not in thresholds:
                    thresholds[pts] = (style, name, color, label)
    # Runs that share a schedule share one threshold line.
    shared = len({v[1] for v in thresholds.values()}) == len(thresholds)
    for pts, (style, name, color, label) in thresholds.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color="k" if shared else color, alpha=0.7,
                label=name if shared or len(runs) == 1 else f"{name} ({label})")
    if not drawn:
        return None
    if log_scale:
        ax.set_yscale("log")
    return _save(fig, ax, path, "step", ylabel, title or default_title)


def plot_quantity(log, quantity: str, path: str | Path, *, label: str | None = None) -> Path | None:
    return plot_runs({label or "run": log}, quantity, path)


def plot_log(log, out_dir: str | Path, *, prefix: str = "inspect_", label: str | None = None) -> list[Path]:
    """Every quantity present in ``log`` (path or records) as ``out_dir/{prefix}{quantity}.png``."""
    written = []
    for quantity in QUANTITIES:
        path = plot_quantity(log, quantity, Path(out_dir) / f"{prefix}{quantity}.png", label=label)
        if path is not None:
            written.append(path)
    return written


def plot_density(densities, path: str | Path, *, title: str = "Hessian eigenvalue density (SLQ)") -> Path:
    """Plot one ``SpectralDensity`` or {label: SpectralDensity} on a log y axis (bulk and outliers)."""
    if not isinstance(densities, dict):
        densities = {"density": densities}
    fig, ax = _figure()
    for label, d in densities.items():
        ax.semilogy(d.grid.numpy(), d.density.clamp_min(1e-12).numpy(), label=label)
    ax.set_ylim(bottom=1e-6)
    return _save(fig, ax, path, "eigenvalue", "density", title)
