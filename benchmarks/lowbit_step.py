"""Step time of AdamW with compressed state (state_dtype=...), as ratios to float32 AdamW from one run.

For 2^20 and 2^22 parameters in 8 square matrices (sides 362 and 724: each param's last block is
partial), the step time of gradkit's AdamW unfused and fused (``fused=True``, compiled) with each storage,
divided by the float32 step of the same path; where they install on this machine, the 8-bit/4-bit AdamW
of torchao and bitsandbytes beside it (ratio to gradkit's float32 unfused step); then float32 and int8
on 4 square matrices of sides 512 and 1024 (whole blocks of 256 values, as the layers of most models: the
fused program updates such a param in place, where a partial last block is stepped through a copy).
Each config is timed on its own (only its optimizer alive, as in a training run: interleaving configs
lets one config's large frees return memory that the next one then faults in again). No assertions: the
numbers go into the README.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/lowbit_step.py
    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/lowbit_step.py --threads 2 --sizes 22,24 --whole-only
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/lowbit_step.py --sizes 22 --modes float32,int4
"""
from __future__ import annotations

import argparse

import torch

import gradkit
from gradkit.bench.measure import device_name
from _timing import best_of, square_params

MODES = ("float32", "bfloat16", "bfloat16+ecc", "int8", "int4")


def step_time(make, total: int, tensors: int = 8) -> float:
    opt = make(square_params(total, tensors))
    opt.step()  # state and (fused) the compiled program
    return best_of(opt.step, repeat=12, number=3)  # the best of many rounds: the machine is shared


def peers() -> dict:
    found = {}
    try:
        from torchao.optim import AdamW4bit, AdamW8bit
        found["torchao AdamW8bit"] = AdamW8bit
        found["torchao AdamW4bit"] = AdamW4bit
    except Exception as error:  # not installed, or no CPU kernels in this build
        print(f"torchao: not available ({type(error).__name__}: {error})")
    try:
        import bitsandbytes as bnb
        found["bitsandbytes AdamW8bit"] = bnb.optim.AdamW8bit
    except Exception as error:
        print(f"bitsandbytes: not available ({type(error).__name__}: {error})")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--sizes", default="20,22", help="powers of two of the parameter counts (default 20,22)")
    parser.add_argument("--whole-only", action="store_true",
                        help="only float32 and int8 on the whole-block shapes (no other storage, no peers)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="the storages timed on the 8 matrices (default all; peers only with all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {device_name()}, torch {torch.__version__}, {args.threads} thread(s)")
    print(f"{'params':>9} {'state':<14} {'unfused ms':>11} {'/fp32':>6} {'fused ms':>9} {'/fp32':>6}")
    modes = args.modes.split(",")
    if modes[0] != "float32" or not set(modes) <= set(MODES):
        raise SystemExit(f"--modes must start with float32 and name storages of {MODES}, got {args.modes!r}")
    others = {} if args.whole_only or modes != list(MODES) else peers()
    for total in (2 ** int(k) for k in args.sizes.split(",")):
        base = {}
        rows = [] if args.whole_only else [(mode, 8, "") for mode in modes]
        whole = [("float32", 4, "whole "), ("int8", 4, "whole ")]
        if modes != list(MODES) and not args.whole_only:
            whole = []
        for mode, tensors, label in rows + whole:
            unfused = step_time(lambda p: gradkit.optim.AdamW(p, state_dtype=mode), total, tensors) * 1e3
            fused = step_time(lambda p: gradkit.optim.AdamW(p, state_dtype=mode, fused=True), total, tensors) * 1e3
            base.setdefault(label + "unfused", unfused)
            base.setdefault(label + "fused", fused)
            name = mode + (", whole" if label else "")
            print(f"{total:>9} {name:<14} {unfused:>11.2f} {unfused / base[label + 'unfused']:>6.2f} {fused:>9.2f} "
                  f"{fused / base[label + 'fused']:>6.2f}")
        for name, make in others.items():
            try:
                ms = step_time(make, total) * 1e3
                print(f"{total:>9} {name:<22} {ms:>11.2f} {ms / base['unfused']:>6.2f}")
            except Exception as error:
                print(f"{total:>9} {name:<22} failed: {type(error).__name__}: {str(error)[:80]}")


if __name__ == "__main__":
    main()
