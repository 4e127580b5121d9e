"""Optimizer-step speed against the memory-bandwidth floor, per optimizer, in one run.

An elementwise optimizer step is memory-bound: its floor is the bytes it must move (read params and
grads, read and write every state tensor, write params) divided by the bandwidth of a plain device copy
measured in the same run. For each optimizer this prints ms/step, the bytes it must move, the floor and
the ratio (medians over interleaved rounds), plus torch.optim's AdamW (fused on GPU; foreach and fused on CPU) and, when installed, the
pytorch-optimizer package's versions side by side. gradkit's optimizers run unfused (multi-tensor) and
fused (``fused=True``: the whole step as one compiled program, compiled before the timing).

    python benchmarks/step_speed.py                    # every elementwise gradkit optimizer, ~10M params
    python benchmarks/step_speed.py --params 150e6 --device cuda
    python benchmarks/step_speed.py --fused only --nonfinite ignore   # the fused path alone, no gradient check
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import statistics
import time

import torch

from gradkit.registry import get_optimizer, list_entries

# The elementwise optimizers (one read/modify/write sweep over each tensor), by registry name.
ELEMENTWISE = ("adamw", "adam", "sgd", "adabelief", "adan", "ademamix", "lion", "diffgrad", "exadam", "grams",
               "adamomentum", "adamp", "sgdp", "sgdsai")
EXTRA_KWARGS = {"sgd": {"momentum": 0.9}, "sgdp": {"momentum": 0.9}}
# pytorch-optimizer's classes for the same methods, when the package is installed.
PYTORCH_OPTIMIZER = {"adabelief": "AdaBelief", "adan": "Adan", "ademamix": "AdEMAMix", "lion": "Lion",
                     "diffgrad": "DiffGrad", "exadam": "EXAdam", "grams": "Grams", "adamp": "AdamP", "sgdp": "SGDP"}


def make_params(total: int, device: str, dtype: torch.dtype) -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    dim, params = 1024, []
    while sum(p.numel() for p in params) < total:
        for shape in ((dim, dim), (dim, dim), (4 * dim, dim), (dim, 4 * dim), (dim,), (dim,)):
            p = torch.nn.Parameter(torch.randn(shape, device=device, dtype=dtype) * 0.02)
            p.grad = torch.randn_like(p) * 1e-3
            params.append(p)
    return params


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_steps(opt, device: str, steps: int) -> float:
    sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class DeviceCopy:
    """``dst.copy_(src)`` over ``numel`` elements, timed like an optimizer (it is a contestant of the
    interleaved rounds, so the floor sees the same load as the optimizers)."""

    def __init__(self, numel: int, device: str, dtype: torch.dtype):
        self.src = torch.randn(numel, device=device, dtype=dtype)
        self.dst = torch.empty_like(self.src)
        self.bytes = 2 * self.src.numel() * self.src.element_size()  # read plus write

    def step(self) -> None:
        self.dst.copy_(self.src)


def bytes_moved(opt, params) -> int:
    """Read params and grads, write params, read and write every state tensor."""
    p_bytes = sum(p.numel() * p.element_size() for p in params)
    state = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
    return 3 * p_bytes + 2 * state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=float, default=10e6)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round (their median counts)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds over all optimizers")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="*", help="registry names to run (default: every elementwise optimizer)")
    parser.add_argument("--fused", choices=("both", "only", "no"), default="both",
                        help="time gradkit's optimizers unfused and fused (both), fused only, or unfused only")
    parser.add_argument("--nonfinite", choices=("raise", "skip", "ignore"), default="raise",
                        help="gradkit's non-finite gradient check (ignore: no check, as torch.optim)")
    args = parser.parse_args()
    device, dtype, total = args.device, torch.float32, int(args.params)

    registered = {e.name for e in list_entries("optimizer")}
    names = [n for n in (args.only or ELEMENTWISE) if n in registered]
    # The reference column is torch's fastest AdamW on the device: fused on GPU, foreach on CPU (where its
    # fused kernel is shown beside it).
    contestants = []  # (label, factory)
    if device == "cuda":
        contestants.append(("torch AdamW (fused)", lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True)))
    else:
        contestants.append(("torch AdamW (foreach)", lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=True)))
        contestants.append(("torch AdamW (fused)", lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True)))
    modes = {"both": (False, True), "only": (True,), "no": (False,)}[args.fused]
    for name in names:
        cls = get_optimizer(name)
        for fuse in modes:
            if fuse and "fused" not in inspect.signature(cls).parameters:
                continue
            options = dict(EXTRA_KWARGS.get(name, {}), nonfinite=args.nonfinite, **({"fused": True} if fuse else {}))
            contestants.append((f"gradkit {name}{' fused' if fuse else ''}",
                                lambda p, c=cls, o=options: c(p, lr=1e-3, **o)))
    if importlib.util.find_spec("pytorch_optimizer") is not None:
        import pytorch_optimizer

        for name in names:
            cls = getattr(pytorch_optimizer, PYTORCH_OPTIMIZER.get(name, ""), None)
            if cls is not None:
                contestants.append((f"pytorch_optimizer {cls.__name__}", lambda p, c=cls: c(p, lr=1e-3)))

    # Every optimizer is built up front and the timing rounds are interleaved, so that the machine's
    # drifting load hits every contestant alike and the ratios are taken within one run.
    device_copy = DeviceCopy(total, device, dtype)
    built = [("copy", device_copy, device_copy.bytes)]
    for label, factory in contestants:
        params = make_params(total, device, dtype)
        opt = factory(params)
        opt.step()  # state allocation (and compiling the fused program) happens outside the timing
        opt.step()
        built.append((label, opt, bytes_moved(opt, params)))
    times = {label: [] for label, _, _ in built}
    for _ in range(args.rounds):
        for label, opt, _ in built:
            times[label].append(time_steps(opt, device, args.steps))
    rows = [(label, statistics.median(times[label]), moved) for label, _, moved in built]
    bandwidth = device_copy.bytes / rows.pop(0)[1]

    name = torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; copy bandwidth {bandwidth / 1e9:.1f} GB/s; {total / 1e6:.0f}M fp32 params; torch {torch.__version__}; "
          f"gradkit nonfinite={args.nonfinite}")
    reference = rows[0][1]
    gradkit_adamw = next((r for r in rows if r[0] in ("gradkit adamw", "gradkit adamw fused")), None)
    print(f"{'optimizer':<34}{'ms/step':>9}{'MB moved':>10}{'floor ms':>10}{'x floor':>9}{'x torch':>9}{'per-byte x adamw':>18}")
    for label, seconds, moved in rows:
        floor = moved / bandwidth
        per_byte = (seconds / moved) / (gradkit_adamw[1] / gradkit_adamw[2]) if gradkit_adamw else float("nan")
        print(f"{label:<34}{seconds * 1e3:>9.2f}{moved / 1e6:>10.0f}{floor * 1e3:>10.2f}{seconds / floor:>9.2f}"
              f"{seconds / reference:>9.2f}{per_byte:>18.2f}")


if __name__ == "__main__":
    main()
