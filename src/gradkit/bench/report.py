"""``report.md`` and the figures, rendered from a :class:`BenchResults` (so from ``results.json`` alone)."""
from __future__ import annotations

import html
import re
from pathlib import Path

from .results import BenchResults
from .summary import format_hparams, rank, table_rows, text_table

__all__ = ["render_report", "markdown_report", "terminal_summary", "figure_stems"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_MARKDOWN = re.compile(r"([\\`*_\[\]|~])")


def _text(value) -> str:
    """Any string from results.json as inert Markdown text: one line, no HTML, no markup."""
    return _MARKDOWN.sub(r"\\\1", html.escape(_CONTROL.sub(" ", str(value)), quote=False))


def _code(value) -> str:
    """An inline code span that its content cannot close (one line; fence longer than any backtick run)."""
    text = _CONTROL.sub(" ", str(value))
    fence = "`" * (1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _code_block(value) -> list[str]:
    """A fenced block that its content cannot close or escape (control characters become spaces)."""
    text = _CONTROL.sub(" ", str(value))
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return [fence, text, fence]


def _md_table(header: list[str], body: list[list[str]], escaped: bool = False) -> str:
    """``escaped``: the cells are Markdown already (made inert by the caller)."""
    esc = (lambda cell: cell) if escaped else _text
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in body]
    return "\n".join(lines)


def _sweep_table(results: BenchResults, task: str) -> str | None:
    """Validation metric of every sweep point on the first seed; the chosen point is in bold."""
    runs = [r for r in results.runs if r.task == task and r.seed == 0]
    points = []
    for r in runs:
        key = format_hparams(r.hparams)
        if key not in points:
            points.append(key)
    if len(points) < 2:
        return None
    contestants = list(dict.fromkeys(r.contestant for r in runs))
    body = []
    for c in contestants:
        cells = [_text(c)]
        for p in points:
            run = next((r for r in runs if r.contestant == c and format_hparams(r.hparams) == p), None)
            metric = None if run is None else run.final_val.get("metric")
            if run is None:
                cells.append("")
            elif run.status != "ok" or metric is None:
                cells.append(_text(run.status))
            else:
                v = f"{metric:.4f}"
                cells.append(f"**{v}**" if run.selected else v)
        body.append(cells)
    return _md_table([_text(h) for h in ("optimizer", *points)], body, escaped=True)


def _edge_choices(rows, sweep: dict) -> list[tuple[str, str, object]]:
    """(contestant, key, value) where the chosen value is the smallest or largest of a numeric axis of 3+ values."""
    edges = []
    for row in rows:
        for key, values in sweep.items():
            numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if len(numeric) < 3 or len(numeric) != len(values) or key not in row.hparams:
                continue
            if row.hparams[key] in (min(numeric), max(numeric)):
                edges.append((row.contestant, key, row.hparams[key]))
    return edges


def _overview(results: BenchResults) -> str | None:
    """One row per contestant across tasks, when there are several tasks."""
    if len(results.tasks) < 2:
        return None
    per_task = {task: rank(results, task) for task in results.tasks}
    contestants = list(dict.fromkeys(row.contestant for rows in per_task.values() for row in rows))
    table = []
    for c in contestants:
        cells, ranks = [], []
        for task, rows in per_task.items():
            position = next((i for i, row in enumerate(rows, 1) if row.contestant == c), None)
            row = rows[position - 1] if position else None
            if row is None or row.val_metric is None:
                cells.append("-" if row is None else row.status)
                ranks.append(len(rows) + 1)
            else:
                cells.append(f"{row.val_metric[0]:.4f} ({position})")
                ranks.append(position)
        table.append((sum(ranks) / len(ranks), c, cells))
    table.sort(key=lambda t: t[0])
    header = ["optimizer", *[f"{t} ({results.tasks[t].metric})" for t in per_task], "mean rank"]
    return _md_table(header, [[c, *cells, f"{mean:.1f}"] for mean, c, cells in table])


def markdown_report(results: BenchResults, figures: dict[str, list[Path]] | None = None) -> str:
    env = results.environment
    seeds = results.config.get("seeds", [0])
    # Every string copied from results.json goes through _text/_code/_code_block: the file may come
    # from anywhere, and the report must stay inert Markdown.
    out = [f"# gradkit bench: {_text(results.name)}", ""]
    if results.command:
        out += [*_code_block(results.command), ""]
    out.append(_text(f"{results.created} · gradkit {env.get('gradkit')} · torch {env.get('torch')} · Python "
                     f"{env.get('python')} · {env.get('device')} · torch threads: {env.get('threads')} · "
                     f"{len(results.runs)} runs"))
    out.append("")
    if results.status != "complete":
        out += [f"**Status: {_text(results.status)}.** Only the runs that finished are reported.", ""]
    sweep = results.config.get("sweep") or {}
    if sweep:
        out.append("Each optimizer's " + ", ".join(map(_text, sweep)) + " was chosen on seed 0 by the final validation metric "
                   "(ties: lower validation loss) from "
                   + "; ".join(_text(f"{k} in {{{', '.join(map(str, v))}}}") for k, v in sweep.items())
                   + ("; only the chosen point ran on the other seeds." if len(seeds) > 1 else "."))
    if len(seeds) > 1:
        out.append(f"Values are mean ± standard deviation over {len(seeds)} seeds (seeds {seeds[0]}..{seeds[-1]}); "
                   "every optimizer saw the same initial weights and batches for a given seed.")
    else:
        out.append("One seed; every optimizer saw the same initial weights and batches.")
    out += ["`state`: bytes of optimizer state after training; `step (median)`: median time of `optimizer.step()` alone; "
            "`train time`: training loop without evaluation; `peak RSS`: the process's resident memory (whole process, "
            "so it includes the data and earlier runs); a run is `diverged` when its loss became non-finite or exceeded "
            f"{results.config.get('divergence_factor', 1e3):g} times its first value.", ""]
    overview = _overview(results)
    if overview:
        out += ["## Overview", "", "Validation metric and rank on each task (ranked by mean rank; failed runs rank last).", "",
                overview, ""]
    for task, info in results.tasks.items():
        rows = rank(results, task)
        out += [f"## {_text(task)}", "", f"{_text(info.summary)}. {_code('--task ' + info.spec)}: {info.steps} steps, "
                f"batch {info.batch_size}, evaluation every {info.eval_every} steps, {info.num_params:,} parameters. "
                f"Ranked by validation {_text(info.metric)} ({'higher' if info.higher_is_better else 'lower'} is better).", ""]
        if not rows:
            out += ["No run finished.", ""]
            continue
        header, body = table_rows(rows, info)
        out += [_md_table(header, body), ""]
        sweep_md = _sweep_table(results, task)
        if sweep_md:
            out += ["Sweep (validation " + _text(info.metric) + ", seed 0; chosen in bold):", "", sweep_md, ""]
            edges = _edge_choices(rows, sweep)
            if edges:
                out += ["Chosen at the edge of the sweep (a wider sweep may find better): "
                        + ", ".join(f"{_text(c)} ({_text(f'{k}={v}')})" for c, k, v in edges) + ".", ""]
        errors = [r for r in results.runs if r.task == task and r.status == "error"]
        for r in errors:
            out.append(f"- {_text(r.contestant)} {_text(format_hparams(r.hparams))} seed {r.seed}: {_text(r.error)}")
        if errors:
            out.append("")
        for path in (figures or {}).get(task, []):
            out += [f"![{path.stem}]({path.name})", ""]
    return "\n".join(out).rstrip() + "\n"


def render_report(results: BenchResults, out_dir: str | Path, plots: bool = True) -> list[Path]:
    """Write ``report.md`` (and the PNG figures) into ``out_dir``; returns the files written."""
    from .plots import plot_task

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[Path]] = {}
    if plots:
        stems = figure_stems(results.tasks)
        for task in results.tasks:
            rows = rank(results, task)
            if rows:
                figures[task] = plot_task(results, task, rows, out_dir, stem=stems[task])
    report = out_dir / "report.md"
    report.write_text(markdown_report(results, figures))
    return [report, *(p for paths in figures.values() for p in paths)]


def figure_stems(tasks) -> dict[str, str]:
    """A distinct, safe file-name stem per task name: figures land directly in the run directory."""
    from .rundir import safe_filename

    stems: dict[str, str] = {}
    for task in tasks:
        stem, n = safe_filename(task), 2
        while stem in stems.values():
            stem, n = f"{safe_filename(task)}-{n}", n + 1
        stems[task] = stem
    return stems


def terminal_summary(results: BenchResults) -> str:
    """The ranking tables as plain text, for the end of ``gradkit bench``."""
    parts = []
    for task, info in results.tasks.items():
        rows = rank(results, task)
        if not rows:
            continue
        header, body = table_rows(rows, info, with_rss=False)
        parts.append(f"{task} ({info.steps} steps, ranked by validation {info.metric}, "
                     f"{'higher' if info.higher_is_better else 'lower'} is better)\n{text_table(header, body)}")
    if results.status != "complete":
        parts.append(f"status: {results.status}; only finished runs are shown")
    return "\n\n".join(parts)
