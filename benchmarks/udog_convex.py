"""U-DoG against DoG, SGD with a tuned learning rate and Adam, on a convex task and a small neural net.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/udog_convex.py [--queries N] [--seeds S] [--batch B]

Tasks (scikit-learn's digits, the library's fixed train/val split):
- convex: multinomial logistic regression (64 -> 10) with an L2 penalty 1e-3/2 ||W||^2 (strongly convex, so
  the optimum f* is finite; found by full-batch L-BFGS in float64). Reported: the suboptimality of the
  full-batch training objective f - f* at the end, and validation accuracy. Run twice: with minibatches
  (noisy gradients) and with the full training set as every query (no noise, where acceleration shows).
- net: gradkit.models.digits_mlp (64-64-64-10, ReLU), cross-entropy. Reported: full-batch training loss and
  validation accuracy at the end.

Every method gets the same number of gradient queries (minibatches of --batch, a fresh one per query, the
same batch order for every method of a seed): U-DoG makes two per iteration, so it runs N/2 iterations and
is evaluated at its output point (the weighted average, ``opt.eval()``); DoG, SGD and Adam run N steps and
are evaluated at the last iterate. U-DoG and DoG use their defaults (reps_rel 1e-6) and no learning rate;
U-DoG is also run with reps_rel 1e-8 and 1e-4. SGD's learning rate is chosen from a sweep, and Adam's
too, by the mean of the reported training metric over the seeds (the tuning cost U-DoG and DoG do not
pay); Adam at its default lr 1e-3 is shown as well. Mean and spread (min..max) over the seeds.
"""
from __future__ import annotations

import argparse
import platform
import statistics

import torch
import torch.nn.functional as F

import gradkit
from gradkit.datasets import digits
from gradkit.models import digits_mlp
from gradkit.optim import DoG, UDoG

L2 = 1e-3
SGD_LRS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
ADAM_LRS = (1e-3, 3e-3, 1e-2, 3e-2)


def logreg():
    return torch.nn.Linear(64, 10)


def objective(model, x, y, convex):
    loss = F.cross_entropy(model(x), y)
    if convex:
        loss = loss + 0.5 * L2 * model.weight.pow(2).sum()
    return loss


def optimum(x, y):
    """f* of the convex task: full-batch L-BFGS in float64 to a gradient norm of 1e-10."""
    model = logreg().double()
    torch.nn.init.zeros_(model.weight), torch.nn.init.zeros_(model.bias)
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=2000, tolerance_grad=1e-10, tolerance_change=0,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective(model, x.double(), y, True)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    return closure().item()


def run(method, lr, convex, seed, queries, batch, train, val):
    """Train from seed ``seed``'s initialisation; ``batch=None``: every query is the full training set."""
    torch.manual_seed(seed)
    model = logreg() if convex else digits_mlp()
    params = model.parameters()
    if method == "udog":
        opt = UDoG(params, reps_rel=lr)
    elif method == "dog":
        opt = DoG(params)
    elif method == "sgd":
        opt = gradkit.optim.SGD(params, lr=lr)
    else:
        opt = gradkit.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(1000 + seed)
    for _ in range(queries):
        idx = slice(None) if batch is None else torch.randint(0, len(train), (batch,), generator=g)
        opt.zero_grad()
        objective(model, train.inputs[idx], train.targets[idx], convex).backward()
        opt.step()  # U-DoG: one query per step, two per iteration
    if method == "udog":
        opt.eval()
    with torch.no_grad():
        loss = objective(model, train.inputs, train.targets, convex).item()
        acc = (model(val.inputs).argmax(1) == val.targets).float().mean().item()
    return loss, acc


def summary(values, fmt):
    lo, hi = min(values), max(values)
    return f"{fmt(statistics.mean(values))} ({fmt(lo)}..{fmt(hi)})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    train, val = digits("train"), digits("val")
    f_star = optimum(train.inputs, train.targets)
    seeds = range(args.seeds)
    print(f"# U-DoG benchmark: {args.queries} gradient queries of batch {args.batch}, seeds {list(seeds)}; "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread")
    print(f"convex task: f* = {f_star:.6f} (L-BFGS, float64)\n")
    for convex, batch in ((True, args.batch), (True, None), (False, args.batch)):
        rows = {}
        configs = [("U-DoG (no lr)", "udog", 1e-6), ("U-DoG reps_rel=1e-8", "udog", 1e-8),
                   ("U-DoG reps_rel=1e-4", "udog", 1e-4), ("DoG (no lr)", "dog", None)]
        configs += [(f"SGD lr={lr}", "sgd", lr) for lr in SGD_LRS] + [(f"Adam lr={lr}", "adam", lr) for lr in ADAM_LRS]
        for label, method, lr in configs:
            runs = [run(method, lr, convex, s, args.queries, batch, train, val) for s in seeds]
            metric = [loss - f_star if convex else loss for loss, _ in runs]
            rows[label] = (metric, [acc for _, acc in runs])
        best_sgd = min((k for k in rows if k.startswith("SGD")), key=lambda k: statistics.mean(rows[k][0]))
        best_adam = min((k for k in rows if k.startswith("Adam")), key=lambda k: statistics.mean(rows[k][0]))
        shown = ["U-DoG (no lr)", "U-DoG reps_rel=1e-8", "U-DoG reps_rel=1e-4", "DoG (no lr)",
                 f"{best_sgd} (best of {len(SGD_LRS)})", f"{best_adam} (best of {len(ADAM_LRS)})", "Adam lr=0.001"]
        name = ("convex: L2-regularised logistic regression, f - f*" if convex
                else "net: digits MLP, training loss") + (", full batch" if batch is None else f", batch {batch}")
        print(f"## {name}\n")
        print("| method | " + ("f - f*" if convex else "train loss") + " | val accuracy |")
        print("|---|---:|---:|")
        for label in shown:
            key = label.split(" (best")[0]
            metric, acc = rows[key]
            fmt = lambda v: f"{v:.2e}"  # noqa: E731
            print(f"| {label} | {summary(metric, fmt)} | {summary(acc, lambda v: f'{v:.3f}')} |")
        print("\nsweep (mean over seeds): " + ", ".join(
            f"{k}: {statistics.mean(rows[k][0]):.3g}" for k in rows if k.startswith(("SGD", "Adam"))) + "\n")


if __name__ == "__main__":
    main()
