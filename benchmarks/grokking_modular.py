"""Modular addition without weight decay: softmax cross-entropy vs StableMax vs ⊥AdamW (Prieto et
al., "Grokking at the Edge of Numerical Stability", ICLR 2025, in kind, at CPU scale).
Writes docs/reports/seeds/grokking_modular_p{p}_lr{lr}.{md,json}.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/grokking_modular.py [--steps N] [--p P]

Task: (a + b) mod p, inputs the concatenated one-hot codes of a and b (2p), a random 40% of the p^2
pairs for training (seed 0), the rest for testing. Model: MLP 2p-200-200-p (ReLU, no biases), float32,
full batch, no weight decay, Adam(lr --lr (1e-3), betas (0.9, 0.98)). Three runs from the same initialisation:
softmax cross-entropy with Adam, StableMax cross-entropy with Adam, softmax cross-entropy with
⊥AdamW (gradkit.optim.PerpAdamW, weight_decay 0). Logged every `every` steps: train/test accuracy and
the Softmax-Collapse share of the training set (gradkit.inspect.softmax_collapse on the logits).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gradkit.inspect import softmax_collapse
from gradkit.losses import stablemax_cross_entropy
from gradkit.optim import PerpAdamW

ROOT = Path(__file__).resolve().parents[1]


def data(p: int, train_fraction: float, seed: int):
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    x = torch.cat([F.one_hot(a, p), F.one_hot(b, p)], 1).float()
    y = (a + b) % p
    order = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    cut = int(train_fraction * p * p)
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def model(p: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2 * p, 200, bias=False), nn.ReLU(), nn.Linear(200, 200, bias=False), nn.ReLU(),
                         nn.Linear(200, p, bias=False))


def run(name, loss_fn, make_opt, train, test, p, steps, every, seed):
    net = model(p, seed)
    opt = make_opt(net.parameters())
    log = []
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            with torch.no_grad():
                logits = net(train[0])
                sc = softmax_collapse(logits, train[1])
                log.append({"step": step,
                            "train_acc": (logits.argmax(1) == train[1]).float().mean().item(),
                            "test_acc": (net(test[0]).argmax(1) == test[1]).float().mean().item(),
                            "train_loss": loss_fn(logits, train[1]).item(),
                            "collapsed": sc.collapsed})
        if step == steps:
            break
        opt.zero_grad()
        loss_fn(net(train[0]), train[1]).backward()
        opt.step()
    return {"name": name, "log": log}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--p", type=int, default=61)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--train-fraction", type=float, default=0.4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    train, test = data(args.p, args.train_fraction, args.seed)
    adam = lambda params: torch.optim.Adam(params, lr=args.lr, betas=(0.9, 0.98))  # noqa: E731
    perp = lambda params: PerpAdamW(params, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)  # noqa: E731
    configs = [("softmax CE + Adam", F.cross_entropy, adam), ("StableMax CE + Adam", stablemax_cross_entropy, adam),
               ("softmax CE + ⊥AdamW", F.cross_entropy, perp)]
    results, start = [], time.perf_counter()
    for name, loss_fn, make_opt in configs:
        results.append(run(name, loss_fn, make_opt, train, test, args.p, args.steps, args.every, args.seed))
        last = results[-1]["log"][-1]
        print(f"{name:24s} train {last['train_acc']:.3f} test {last['test_acc']:.3f} collapsed {last['collapsed']:.3f}",
              flush=True)
    machine = f"{platform.machine()} CPU, {torch.get_num_threads()} thread(s), torch {torch.__version__}"
    out = ROOT / "docs" / "reports" / "seeds"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"grokking_modular_p{args.p}_lr{args.lr:g}"
    (out / f"{stem}.json").write_text(json.dumps({"args": vars(args), "machine": machine, "runs": results}, indent=1))
    lines = [f"# Modular addition without weight decay (p = {args.p}, {args.steps} full-batch steps)", "",
             "Command: `OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/grokking_modular.py "
             f"--p {args.p} --steps {args.steps} --every {args.every} --lr {args.lr:g}`; machine: {machine}; "
             f"wall time {time.perf_counter() - start:.0f} s.", "",
             "The Softmax-Collapse share is measured on the logits under softmax for every run (for the StableMax "
             "run it says how collapsed softmax would be on those logits, not what its own loss sees).", "",
             "| run | step | train acc | test acc | Softmax-Collapse share (train) |", "|---|---|---|---|---|"]
    for r in results:
        for entry in r["log"]:
            lines.append(f"| {r['name']} | {entry['step']} | {entry['train_acc']:.3f} | {entry['test_acc']:.3f} | "
                         f"{entry['collapsed']:.3f} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
