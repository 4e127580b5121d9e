"""Per-step cost of the arena report's optimizers, measured in interleaved rounds in one process, for the
equal-wall-clock ranking of docs/reports/frontier (a load-robust replacement for the runs' own wall times).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/frontier_wallclock.py \
        docs/reports/frontier/final-stdlib-lm-*/results.json docs/reports/frontier/final-digits-cnn-*/results.json \
        --out docs/reports/frontier/step_costs.json

For every task the optimizer and learning rate the report chose (the best mean over seeds, as
``frontier_arena_summary.py`` chooses them) train one copy of the task's model each. A round runs
``--steps`` consecutive training steps (batch, forward and backward, ``optimizer.step()``) of every
optimizer in turn, the order rotating from round to round; the forward+backward and the step are timed
separately. Rounds cover the run from its first step (``--rounds x --steps`` = the runs' steps by default),
so the basis refreshes and inverse roots every 10 steps fall into every round. The figure for each
optimizer is the median over rounds of the round's mean; the model's forward+backward time is the median
over all optimizers' rounds (the same model runs it). A load spike hits the optimizers of one round
about equally, so the ratios to AdamW are what the summary uses. Writes JSON; prints a table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from frontier_arena_summary import choose, load_runs

from gradkit.bench.measure import device_name
from gradkit.bench.tasks.registry import make_task
from gradkit.spec import build_optimizer


def _learner(task, data, spec: str, lr, seed: int = 0):
    torch.manual_seed(seed)
    model = task.build_model()
    model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = build_optimizer(spec, named, **({} if lr is None else {"lr": lr}))
    return model, optimizer, torch.Generator().manual_seed(seed)


def _round(task, data, learner, steps: int) -> tuple[float, float]:
    """Mean forward+backward and step seconds over ``steps`` training steps."""
    model, optimizer, generator = learner
    fb = st = 0.0
    for _ in range(steps):
        batch = task.sample(data, generator)
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        task.losses(model, batch).backward()
        t1 = time.perf_counter()
        optimizer.step()
        t2 = time.perf_counter()
        fb, st = fb + t1 - t0, st + t2 - t1
    return fb / steps, st / steps


def measure(task_name: str, chosen: dict, run_steps: int, rounds: int | None, steps: int) -> dict:
    task = make_task(task_name)
    data = task.load(torch.device("cpu"))
    rounds = rounds or max(1, run_steps // steps)
    names = sorted(chosen)
    learners = {n: _learner(task, data, n, chosen[n].get("lr")) for n in names}
    fb, st = {n: [] for n in names}, {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            a, b = _round(task, data, learners[n], steps)
            fb[n].append(a)
            st[n].append(b)
    forward_backward = statistics.median(x for n in names for x in fb[n])
    return {"forward_backward_s": forward_backward, "rounds": rounds, "steps_per_round": steps,
            "run_steps": run_steps,
            "step_s": {n: statistics.median(st[n]) for n in names},
            "forward_backward_s_by_optimizer": {n: statistics.median(fb[n]) for n in names}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+")
    parser.add_argument("--rounds", type=int, default=None, help="default: the runs' steps / --steps")
    parser.add_argument("--steps", type=int, default=10, help="steps per round (10: one refresh per round)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = {"machine": device_name(torch.device("cpu")), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "tasks": {}}
    for task_name, best in choose(load_runs(args.results)).items():
        chosen = {name: hp for name, (hp, _) in best.items()}
        run_steps = max(r["steps_done"] for _, runs in best.values() for r in runs)
        m = measure(task_name, chosen, run_steps, args.rounds, args.steps)
        out["tasks"][task_name] = m
        ref = m["step_s"].get("adamw")
        print(f"### {task_name}: forward+backward {m['forward_backward_s'] * 1e3:.2f} ms "
              f"({m['rounds']} rounds of {m['steps_per_round']} steps)")
        for name, s in sorted(m["step_s"].items(), key=lambda kv: kv[1]):
            ratio = f"{s / ref:.2f}" if ref else "-"
            print(f"{name:<70} step {s * 1e3:9.2f} ms  x AdamW {ratio}")
        sys.stdout.flush()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
