"""Memory-efficient optimizers on a byte-level LLaMA-style LM trained on the Python standard library's source.

    OMP_NUM_THREADS=1 python benchmarks/lowrank_lm.py            # ~10 minutes on one CPU core
    OMP_NUM_THREADS=1 python benchmarks/lowrank_lm.py --steps 50 # a quick smoke run

Trains ``gradkit.models.TinyLM`` from the same initialisation and on the same batches with AdamW, GaLore,
Fira, FRUGAL (density 0.25 with SVD, random and blockwise projections), the SVD-free (DCT) variant and
SNSM, at matched state memory for the projected matrices (rank = 0.25 * min(m, n) for the Adam-style
methods, twice that for SNSM, which keeps one subspace moment instead of two). Embeddings, head and norms
stay AdamW-state-full in every low-rank method (the papers' default). Prints validation loss (nats per
byte, held-out stdlib files), optimizer state bytes per parameter (``optimizer.state_bytes()`` after the
first step, compared with the prediction ``gradkit.memory.estimate`` made before training, and the peak
over the run, which differs only for the blockwise projector) and the median step time relative to
AdamW's, all from one run. Not a test: nothing here is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import gradkit.lowrank  # noqa: F401  (registers the optimizers)
from gradkit.datasets import stdlib_text
from gradkit.memory import estimate
from gradkit.models import TinyLM
from gradkit.registry import get_optimizer


def configs(dim: int, period: int, snsm_lr: float) -> list[tuple[str, str, dict]]:
    rank = dim // 4  # every matrix of TinyLM has min(m, n) = dim
    return [
        ("AdamW", "adamw", dict(weight_decay=0.0)),
        ("GaLore (r=d/4)", "galore", dict(rank=rank, update_proj_gap=period)),
        ("Fira (r=d/4)", "fira", dict(rank=rank, update_proj_gap=period)),
        ("FRUGAL svd rho=.25", "frugal", dict(density=0.25, projector="svd", update_freq=period)),
        ("FRUGAL random rho=.25", "frugal", dict(density=0.25, projector="random", update_freq=period)),
        ("FRUGAL block rho=.25", "frugal", dict(density=0.25, projector="block", update_freq=period)),
        ("SVD-free/DCT (r=d/4)", "svdfree", dict(rank=rank, update_proj_gap=period)),
        ("SNSM (r=d/2)", "snsm", dict(rank=2 * rank, update_proj_gap=period, lr=snsm_lr)),
    ]


def evaluate(model, batches) -> float:
    model.eval()
    with torch.no_grad():
        losses = [F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() for x, y in batches]
    model.train()
    return sum(losses) / len(losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--snsm-lr", type=float, default=2e-2,
                        help="SNSM's learning rate: a subset shares one second moment, the sum of its squares, so "
                             "its steps are ~1/sqrt(subset size) of Adam's and it is tuned separately (as in its paper)")
    parser.add_argument("--period", type=int, default=50, help="subspace update frequency T")
    parser.add_argument("--only", default="", help="comma-separated substrings of method names to run")
    args = parser.parse_args()
    torch.set_num_threads(1)

    train = stdlib_text("train", max_bytes=4_000_000)
    val = stdlib_text("val", max_bytes=1_000_000)
    gen = torch.Generator().manual_seed(1)
    val_batches = [TinyLM.batch(val, 32, args.context, generator=gen) for _ in range(16)]
    gen = torch.Generator().manual_seed(2)
    train_batches = [TinyLM.batch(train, args.batch, args.context, generator=gen) for _ in range(args.steps)]

    rows = []
    base_ms = None
    for label, name, kwargs in configs(args.dim, args.period, args.snsm_lr):
        if args.only and not any(s.strip().lower() in label.lower() for s in args.only.split(",")):
            continue
        torch.manual_seed(0)
        model = TinyLM(dim=args.dim, depth=args.depth, heads=4, context=args.context)
        n_params = sum(p.numel() for p in model.parameters())
        kwargs = {"lr": args.lr, **kwargs}
        predicted = estimate(model, name, **kwargs)
        opt = get_optimizer(name)(model.named_parameters(), **kwargs)
        warmup = max(1, args.steps // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
        step_ms, first, peak = [], None, 0
        for x, y in train_batches:
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t0 = time.perf_counter()
            opt.step()
            step_ms.append((time.perf_counter() - t0) * 1e3)
            sched.step()
            peak = max(peak, opt.state_bytes())  # blockwise state moves between parameters
            first = first if first is not None else opt.state_bytes()
        val_loss = evaluate(model, val_batches)
        ms = statistics.median(step_ms)
        base_ms = base_ms or ms
        rows.append((label, val_loss, first / n_params, peak / n_params, predicted == first, ms / base_ms))
        print(f"{label:<24} val {val_loss:.4f}  state {first / n_params:5.2f} B/param after step 1, "
              f"peak {peak / n_params:5.2f} (estimate exact: {predicted == first})  step {ms:6.1f} ms", flush=True)

    print(f"\nTinyLM dim={args.dim} depth={args.depth} context={args.context}, {n_params} params; "
          f"{args.steps} steps of {args.batch}x{args.context} bytes, lr {args.lr}, T={args.period}\n")
    print("| method | val loss (nats/byte) | state bytes / param (step 1) | peak over run | estimate exact "
          "| step time / AdamW |")
    print("|---|---|---|---|---|---|")
    for label, val_loss, bpp, peak, exact, ratio in rows:
        print(f"| {label} | {val_loss:.4f} | {bpp:.2f} | {peak:.2f} | {'yes' if exact else 'NO'} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
