"""Median optimizer-step time of gradkit optimizers relative to torch.optim (foreach), CPU or GPU.

    python benchmarks/step_time.py            # gradkit AdamW / torch AdamW(foreach=True), ~10M params
    python benchmarks/step_time.py --all      # also Adam and SGD with momentum
    python benchmarks/step_time.py --all --nonfinite ignore   # gradkit without its non-finite gradient check

Prints one ratio per optimizer, measured in one run with interleaved repetitions (noise hits both
sides alike). Not a test: timings never go into assertions.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import gradkit


def model_params(total: int, device: str) -> list[torch.nn.Parameter]:
    """Transformer-shaped tensors (square matrices, wide matrices, vectors) adding up to ~total."""
    torch.manual_seed(0)
    dim = 512
    params = []
    while sum(p.numel() for p in params) < total:
        for shape in ((dim, dim), (dim, dim), (4 * dim, dim), (dim, 4 * dim), (dim,), (dim,)):
            p = torch.nn.Parameter(torch.randn(shape, device=device) * 0.02)
            p.grad = torch.randn_like(p) * 1e-3
            params.append(p)
    return params


def median_step_ms(opt: torch.optim.Optimizer, device: str, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=int, default=10_000_000, help="approximate parameter count")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--all", action="store_true", help="also Adam and SGD")
    parser.add_argument("--nonfinite", default="raise", choices=("raise", "skip", "ignore"),
                        help="gradkit's non-finite gradient policy ('ignore' drops the check)")
    args = parser.parse_args()
    check = args.nonfinite

    pairs = [("AdamW", lambda p: gradkit.optim.AdamW(p, lr=1e-3, weight_decay=0.01, nonfinite=check),
              lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01, foreach=True))]
    if args.all:
        pairs += [
            ("Adam", lambda p: gradkit.optim.Adam(p, lr=1e-3, nonfinite=check),
             lambda p: torch.optim.Adam(p, lr=1e-3, foreach=True)),
            ("SGD momentum", lambda p: gradkit.optim.SGD(p, lr=1e-3, momentum=0.9, nonfinite=check),
             lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, foreach=True)),
        ]
    n = sum(p.numel() for p in model_params(args.params, "cpu"))
    print(f"device={args.device} threads={torch.get_num_threads()} params={n / 1e6:.1f}M torch={torch.__version__}")
    print(f"{'optimizer':<14}{'gradkit ms':>12}{'torch ms':>12}{'ratio':>8}")
    for name, ours, theirs in pairs:
        opt_a, opt_b = ours(model_params(args.params, args.device)), theirs(model_params(args.params, args.device))
        a, b = [], []
        for _ in range(args.rounds):  # interleave so that drifting machine load hits both alike
            a += median_step_ms(opt_a, args.device, 3)
            b += median_step_ms(opt_b, args.device, 3)
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{name:<14}{ma:>12.2f}{mb:>12.2f}{ma / mb:>8.3f}")


if __name__ == "__main__":
    main()
