"""Watch curvature and step sizes while training the digits CNN with SGD and with SGDP.

Trains gradkit.models.DigitsCNN (batch-normalised convolutions) on scikit-learn's digits twice,
once with SGD and once with SGDP (Heo et al., "AdamP", ICLR 2021), under the same seed, learning
rate and momentum, and every ``--every`` steps records with gradkit.inspect.Inspector:

* the top Hessian eigenvalue of the loss on a fixed batch, next to 2 / lr (edge of stability);
* the fraction of the gradient inside the top-10 Hessian eigenspace (Gur-Ari et al.);
* the effective step size (angle per step) and norm growth of the batch-norm-preceded conv weights.

Writes JSON lines to --logs and PNGs to --out (both runs/inspect by default) and prints the
Hessian-vector-product cost of each warm-started top-eigenvalue estimate. Runs in about a minute and
a half on one core:

    OMP_NUM_THREADS=1 python examples/inspect_training.py

The figures in docs/images come from ``--out docs/images``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import gradkit
from gradkit.datasets import digits
from gradkit.inspect import HessianOperator, Inspector, plot_density, plot_runs, scale_invariant_parameters, spectral_density
from gradkit.models import DigitsCNN


def train(name, make_optimizer, args, logs: Path):
    torch.manual_seed(args.seed)
    model = DigitsCNN().train()
    data = digits("train", image=True)
    probe = (data.inputs[: args.probe], data.targets[: args.probe])
    invariant = scale_invariant_parameters(model, F.cross_entropy, probe)
    opt = make_optimizer(model.parameters())
    inspector = Inspector(model, F.cross_entropy, probe, every=args.every, optimizer=opt, log_path=logs / f"{name.lower()}.jsonl",
                          top_k=1, overlap_k=10, overlap_max_hvps=20, scale_invariant=invariant, seed=args.seed)
    g = torch.Generator().manual_seed(args.seed)
    step, start = 0, time.perf_counter()
    while step <= args.steps:
        for idx in torch.randperm(len(data), generator=g).split(args.batch_size):
            if step > args.steps:
                break
            opt.zero_grad()
            loss = F.cross_entropy(model(data.inputs[idx]), data.targets[idx])
            loss.backward()
            with inspector.step(step, train_loss=loss):
                opt.step()
            step += 1
    val = digits("val", image=True)
    model.eval()
    with torch.no_grad():
        accuracy = float((model(val.inputs).argmax(1) == val.targets).float().mean())
    model.train()
    hvps = [r["sharpness_hvps"] for r in inspector.records]
    last = inspector.records[-1]
    print(f"{name}: {time.perf_counter() - start:.1f}s, val accuracy {accuracy:.3f}, scale-invariant weights {invariant}")
    print(f"  top eigenvalue {last['top_eigenvalues'][0]:.2f} (2/lr = {last['two_over_lr']:.1f}), overlap with top-10 {last['overlap']:.3f}")
    print(f"  HVPs per top-eigenvalue estimate: cold start {hvps[0]}, warm-started max {max(hvps[1:])}, mean {sum(hvps[1:]) / len(hvps[1:]):.1f}"
          f" (all converged: {all(r['sharpness_converged'] for r in inspector.records)})")
    return model, probe, inspector.records


def hvp_milliseconds(model, probe, method: str, repeats: int = 5) -> float:
    op = HessianOperator(model, F.cross_entropy, probe, method=method)
    v = torch.randn(op.size)
    op.matvec(v)  # builds the cached graph (double backward) and warms up allocators
    start = time.perf_counter()
    for _ in range(repeats):
        op.matvec(v)
    return 1000 * (time.perf_counter() - start) / repeats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps (default: 300)")
    parser.add_argument("--every", type=int, default=20, help="measure every this many steps (default: 20)")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate of both runs (default: 0.1)")
    parser.add_argument("--momentum", type=float, default=0.9, help="momentum of both runs (default: 0.9)")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size (default: 64)")
    parser.add_argument("--probe", type=int, default=128,
                        help="examples in the fixed batch the Hessian is measured on (default: 128)")
    parser.add_argument("--density", action=argparse.BooleanOptionalAction, default=True,
                        help="also plot the final spectral densities (default: on)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, batches and probes (default: 0)")
    parser.add_argument("--out", type=Path, default=Path("runs/inspect"), help="where the PNGs go (default: runs/inspect)")
    parser.add_argument("--logs", type=Path, default=Path("runs/inspect"),
                        help="where the JSON-lines logs go (default: runs/inspect)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.logs.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    runs = {
        "SGD": lambda ps: gradkit.optim.SGD(ps, lr=args.lr, momentum=args.momentum),
        "SGDP": lambda ps: gradkit.optim.SGDP(ps, lr=args.lr, momentum=args.momentum),
    }
    logs, finals = {}, {}
    for name, make in runs.items():
        model, probe, logs[name] = train(name, make, args, args.logs)
        finals[name] = (model, probe)

    plot_runs(logs, "sharpness", args.out / "inspect_sharpness.png", title=f"Top Hessian eigenvalue vs 2/lr (momentum {args.momentum})")
    plot_runs(logs, "overlap", args.out / "inspect_overlap.png", title="Gradient overlap with the top-10 Hessian eigenspace")
    plot_runs(logs, "effective_step", args.out / "inspect_effective_step.png", title="Effective step size of the BN-preceded conv weights")
    plot_runs(logs, "weight_norm", args.out / "inspect_weight_norm.png", title="Norm growth of the BN-preceded conv weights")
    if args.density:
        densities = {}
        for name, (model, probe) in finals.items():
            op = HessianOperator(model, F.cross_entropy, probe)
            densities[name] = spectral_density(op, num_iter=60, generator=torch.Generator().manual_seed(args.seed))
        plot_density(densities, args.out / "inspect_density.png", title="Hessian eigenvalue density at the end of training (SLQ, 60 steps)")
    model, probe = finals["SGD"]
    timings = {method: hvp_milliseconds(model, probe, method) for method in ("double_backward", "func")}
    print("ms per Hessian-vector product on the probe batch: " + ", ".join(f"{m} {t:.1f}" for m, t in timings.items()))
    print(f"plots written to {args.out}/inspect_*.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
