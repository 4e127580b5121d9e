"""Rank the arena's optimizers at equal steps and at equal wall-clock from ``gradkit bench`` results.

    python benchmarks/frontier_arena_summary.py docs/reports/frontier/stdlib-lm/results.json ...

For every task and optimizer the learning rate with the lowest mean final validation loss is taken
(over the seeds run at it). Equal steps: its final validation loss (mean and spread over seeds). Equal
wall-clock: the validation loss at the last evaluation reached within the budget, the median over
optimizers of their total training time (half of them finish within it; the others are compared at
their last evaluation before it).
Wall-clock includes the forward and backward passes and depends on the machine's load; the step time
is the median ``optimizer.step()`` time. Prints markdown.
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict


def _mean_spread(values):
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def _split(label: str, hparams: dict) -> tuple[str, dict]:
    """``"soap:lr=0.01,x=1"`` -> ``("soap:x=1", {"lr": 0.01})``: the lr of a spec joins the swept ones."""
    name, _, options = label.partition(":")
    kept = []
    hparams = dict(hparams)
    for option in filter(None, options.split(",")):
        key, _, value = option.partition("=")
        if key == "lr":
            hparams["lr"] = float(value)
        else:
            kept.append(option)
    return (f"{name}:{','.join(kept)}" if kept else name), hparams


def summarize(runs: list[dict]) -> str:
    by_task = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in runs:
        if run["status"] != "ok":
            continue
        name, hparams = _split(run["contestant"], run["hparams"])
        key = tuple(sorted(hparams.items()))
        by_task[run["task"]][name][key].append(run)
    out = []
    for task, contestants in by_task.items():
        best = {}
        for name, points in contestants.items():
            key, chosen = min(points.items(), key=lambda kv: statistics.fmean(r["final_val"]["loss"] for r in kv[1]))
            best[name] = (dict(key), chosen)
        budget = statistics.median(statistics.median(r["wall_s"] for r in chosen) for _, chosen in best.values())
        rows = []
        for name, (hp, chosen) in best.items():
            final = [r["final_val"]["loss"] for r in chosen]
            timed = [[e for e in r["evals"] if e["wall_s"] <= budget][-1]["val"]["loss"] for r in chosen]
            step_ms = statistics.median(r["step_time_median_s"] for r in chosen) * 1e3
            state_kib = chosen[0]["state_bytes"] / 1024
            rows.append((name, hp, final, timed, step_ms, state_kib, len(chosen)))
        out.append(f"### {task}\n")
        out.append(f"Equal wall-clock budget: {budget:.1f} s of training (the median optimizer's total).\n")
        out.append("| rank (steps) | optimizer | lr | seeds | val loss, equal steps | rank (wall-clock) | val loss, equal wall-clock "
                   "| step (median) | state |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        wall_rank = {r[0]: i + 1 for i, r in enumerate(sorted(rows, key=lambda r: statistics.fmean(r[3])))}
        for i, (name, hp, final, timed, step_ms, state_kib, seeds) in enumerate(
                sorted(rows, key=lambda r: statistics.fmean(r[2]))):
            lr = hp.get("lr", "default")
            out.append(f"| {i + 1} | {name} | {lr} | {seeds} | {_mean_spread(final)} | {wall_rank[name]} | "
                       f"{_mean_spread(timed)} | {step_ms:.2f} ms | {state_kib:.0f} KiB |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    runs = []
    for path in sys.argv[1:]:
        with open(path) as f:
            runs.extend(json.load(f)["runs"])
    print(summarize(runs))


if __name__ == "__main__":
    main()
