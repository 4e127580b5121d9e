"""Rank the arena's optimizers at equal steps and at equal wall-clock from ``gradkit bench`` results.

    python benchmarks/frontier_arena_summary.py docs/reports/frontier/final-stdlib-lm-*/results.json \
        --costs docs/reports/frontier/step_costs.json

For every task and optimizer the learning rate with the lowest mean final validation loss is taken
(over the seeds run at it). Equal steps: its final validation loss (mean and spread over seeds). Equal
wall-clock: each optimizer's training step costs the model's forward+backward plus its own
``optimizer.step()``, both measured in interleaved rounds in one process by ``frontier_wallclock.py``
(not the runs' own wall times, which carry the shared machine's load); ``steps x that cost`` is its
training time, the budget is the median over optimizers of their total, and each is compared at its
last evaluation with ``step x cost <= budget``. Prints markdown.
"""
from __future__ import annotations

import argparse
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


def load_runs(paths) -> list[dict]:
    runs = []
    for path in paths:
        with open(path) as f:
            runs.extend(json.load(f)["runs"])
    return runs


def choose(runs: list[dict]) -> dict:
    """``{task: {optimizer: (hparams, runs at the chosen lr)}}``: per optimizer the lr of lowest mean final loss."""
    by_task = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in runs:
        if run["status"] != "ok":
            continue
        name, hparams = _split(run["contestant"], run["hparams"])
        key = tuple(sorted(hparams.items()))
        by_task[run["task"]][name][key].append(run)
    out = {}
    for task, contestants in by_task.items():
        out[task] = {}
        for name, points in contestants.items():
            key, chosen = min(points.items(), key=lambda kv: statistics.fmean(r["final_val"]["loss"] for r in kv[1]))
            out[task][name] = (dict(key), chosen)
    return out


def summarize(runs: list[dict], costs: dict) -> str:
    """Markdown tables; ``costs`` is the JSON of ``frontier_wallclock.py`` (per-step costs measured in one run)."""
    out = []
    for task, best in choose(runs).items():
        cost = costs["tasks"][task]
        fb = cost["forward_backward_s"]
        per_step = {name: fb + cost["step_s"][name] for name in best}
        steps = {name: chosen[0]["steps_done"] for name, (_, chosen) in best.items()}
        budget = statistics.median(steps[name] * per_step[name] for name in best)
        adamw = cost["step_s"].get("adamw")
        rows = []
        for name, (hp, chosen) in best.items():
            final = [r["final_val"]["loss"] for r in chosen]
            timed = [[e for e in r["evals"] if e["step"] * per_step[name] <= budget * (1 + 1e-9)][-1] for r in chosen]
            reached = min(e["step"] for e in timed)
            ratio = f"{cost['step_s'][name] / adamw:.2f}" if adamw else "-"
            state_kib = chosen[0]["state_bytes"] / 1024
            rows.append((name, hp, final, [e["val"]["loss"] for e in timed], reached, cost["step_s"][name] * 1e3,
                         ratio, per_step[name] * 1e3, state_kib, len(chosen)))
        out.append(f"### {task}\n")
        out.append(f"Forward+backward {fb * 1e3:.2f} ms per step. Equal wall-clock budget: {budget:.2f} s "
                   f"(the median optimizer's steps x (forward+backward + step)).\n")
        out.append("| rank (steps) | optimizer | lr | seeds | val loss, equal steps | rank (wall-clock) | step reached "
                   "| val loss, equal wall-clock | step | step / AdamW's | training step | state |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        wall_rank = {r[0]: i + 1 for i, r in enumerate(sorted(rows, key=lambda r: statistics.fmean(r[3])))}
        for i, (name, hp, final, timed, reached, step_ms, ratio, total_ms, state_kib, seeds) in enumerate(
                sorted(rows, key=lambda r: statistics.fmean(r[2]))):
            lr = hp.get("lr", "default")
            out.append(f"| {i + 1} | {name} | {lr} | {seeds} | {_mean_spread(final)} | {wall_rank[name]} | {reached} | "
                       f"{_mean_spread(timed)} | {step_ms:.2f} ms | {ratio} | {total_ms:.2f} ms | {state_kib:.0f} KiB |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+")
    parser.add_argument("--costs", required=True, help="JSON written by benchmarks/frontier_wallclock.py --out")
    args = parser.parse_args()
    with open(args.costs) as f:
        costs = json.load(f)
    print(f"Per-step costs measured on {costs['machine']}, {costs['threads']} thread(s), torch {costs['torch']}.\n")
    print(summarize(load_runs(args.results), costs))


if __name__ == "__main__":
    main()
