"""Step time of AdamW with compressed state (state_dtype=...), as ratios to float32 AdamW from one run.

For 2^20 and 2^22 parameters in 8 square matrices, the step time of gradkit's AdamW unfused and fused
(``fused=True``, compiled) with each storage, divided by the float32 step of the same path; and, where
they install on this machine, the 8-bit/4-bit AdamW of torchao and bitsandbytes beside it (ratio to
gradkit's float32 unfused step). Every config of one size is timed in interleaved rounds (best round
each). No assertions: the numbers go into the README.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/lowbit_step.py
"""
from __future__ import annotations

import time

import torch

import gradkit
from gradkit.bench.measure import device_name
from _timing import square_params

MODES = ("float32", "bfloat16", "bfloat16+ecc", "int8", "int4")


def interleaved(steps: dict, rounds: int = 7, number: int = 3) -> dict:
    """Seconds per call of each of ``steps`` (name -> step function): the best of ``rounds`` rounds of
    ``number`` calls, the rounds of all of them interleaved so that a slow spell of a shared machine hits
    every config alike."""
    for step in steps.values():
        step()  # state and (fused) the compiled program
        step()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for name, step in steps.items():
            t = time.perf_counter()
            for _ in range(number):
                step()
            best[name] = min(best[name], (time.perf_counter() - t) / number)
    return best


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
    torch.set_num_threads(1)
    print(f"machine: {device_name()}, torch {torch.__version__}, 1 thread")
    others = peers()
    for total in (2**20, 2**22):
        steps = {}
        for mode in MODES:
            for fused in (False, True):
                opt = gradkit.optim.AdamW(square_params(total), state_dtype=mode, fused=fused)
                steps[(mode, fused)] = opt.step
        for name, make in others.items():
            try:
                opt = make(square_params(total))
                opt.step()
                steps[(name, None)] = opt.step
            except Exception as error:
                print(f"{total:>9} {name:<22} failed: {type(error).__name__}: {str(error)[:80]}")
        ms = {k: v * 1e3 for k, v in interleaved(steps).items()}
        print(f"{'params':>9} {'state':<22} {'unfused ms':>11} {'/fp32':>6} {'fused ms':>9} {'/fp32':>6}")
        for mode in MODES:
            unfused, fused = ms[(mode, False)], ms[(mode, True)]
            print(f"{total:>9} {mode:<22} {unfused:>11.2f} {unfused / ms[('float32', False)]:>6.2f} {fused:>9.2f} "
                  f"{fused / ms[('float32', True)]:>6.2f}")
        for name in others:
            if (name, None) in ms:
                t = ms[(name, None)]
                print(f"{total:>9} {name:<22} {t:>11.2f} {t / ms[('float32', False)]:>6.2f}")


if __name__ == "__main__":
    main()
