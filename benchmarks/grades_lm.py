"""GradES on the arena's stdlib-lm task: training time and validation loss with and without freezing.
Writes docs/reports/seeds/grades_stdlib_lm.{md,json}.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/grades_lm.py [--steps N] [--tau T] [--grace G] [--patience P]

Two runs from the same initialisation and batch order (TinyLM of the task's defaults, AdamW lr 3e-3,
weight decay 0.01): AdamW alone, and AdamW wrapped in gradkit.optim.GradES (every matrix tracked; freeze a
matrix once its mean absolute gradient stays below tau for `patience` steps after `grace` steps).
Validation bits per byte every `eval_every` steps. Times are wall-clock seconds of the training steps
(evaluation excluded) from one run on one thread; the report gives their ratio.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import gradkit
from gradkit.bench.measure import device_name
from gradkit.bench.tasks.stdlib_lm import StdlibLM
from gradkit.optim import AdamW, GradES

ROOT = Path(__file__).resolve().parents[1]


def run(task, data, steps, eval_every, wrap):
    torch.manual_seed(0)
    model = task.build_model()
    opt = AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    if wrap is not None:
        opt = wrap(opt)
    g = torch.Generator().manual_seed(1)
    curve, elapsed = [], 0.0
    for step in range(1, steps + 1):
        batch = task.sample(data, g)
        start = time.perf_counter()
        opt.zero_grad()
        task.losses(model, batch).backward()
        opt.step()
        elapsed += time.perf_counter() - start
        if step % eval_every == 0 or step == steps:
            model.eval()
            val = task.evaluate(model, data, "val")["metric"]
            model.train()
            curve.append({"step": step, "val_bits_per_byte": val, "train_seconds": elapsed,
                          "frozen": getattr(opt, "frozen_count", 0),
                          "state_bytes": gradkit.state_bytes(getattr(opt, "optimizer", opt))})
    return curve, opt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--tau", type=float, default=8e-4)
    ap.add_argument("--grace", type=int, default=200)
    ap.add_argument("--patience", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(1)
    task = StdlibLM()
    data = task.load("cpu")
    base, _ = run(task, data, a.steps, a.eval_every, None)
    grades, opt = run(task, data, a.steps, a.eval_every,
                      lambda o: GradES(o, tau=a.tau, grace=a.grace, patience=a.patience))
    tracked = sum(1 for g in opt.param_groups for p in g["params"] if p.dim() >= 2)
    final_base, final_grades = base[-1], grades[-1]
    reach = next((r for r in grades if r["val_bits_per_byte"] <= final_base["val_bits_per_byte"]), None)
    result = {"machine": device_name(), "torch": torch.__version__, "python": platform.python_version(),
              "args": vars(a), "tracked_matrices": tracked, "adamw": base, "grades": grades,
              "time_ratio": final_grades["train_seconds"] / final_base["train_seconds"]}
    out = ROOT / "docs" / "reports" / "seeds"
    out.mkdir(parents=True, exist_ok=True)
    (out / "grades_stdlib_lm.json").write_text(json.dumps(result, indent=1))
    lines = [f"# GradES on stdlib-lm ({device_name()}, 1 thread, torch {torch.__version__})", "",
             f"    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/grades_lm.py --steps {a.steps} "
             f"--tau {a.tau} --grace {a.grace} --patience {a.patience}", "",
             "| step | AdamW val bits/byte | GradES val bits/byte | frozen matrices | GradES / AdamW train time | "
             "GradES / AdamW state bytes |", "|---|---|---|---|---|---|"]
    for b, r in zip(base, grades):
        lines.append(f"| {b['step']} | {b['val_bits_per_byte']:.4f} | {r['val_bits_per_byte']:.4f} | "
                     f"{r['frozen']}/{tracked} | {r['train_seconds'] / b['train_seconds']:.3f} | "
                     f"{r['state_bytes'] / b['state_bytes']:.3f} |")
    lines += ["", f"Training-time ratio at the end: {result['time_ratio']:.3f}. GradES reaches AdamW's final "
              f"validation bits/byte ({final_base['val_bits_per_byte']:.4f}): "
              + (f"at step {reach['step']}" if reach else "no") + "."]
    (out / "grades_stdlib_lm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
