"""What all-or-nothing steps cost, printed as ratios measured in one run (no assertions).

For each optimizer and size, the step time of:
  plain          the default step (inputs checked before any write; counters and params written last)
  transactional  ``opt.transactional = True`` (state and params copied before the chain, restored on failure)
and, for scale, torch.optim.AdamW (foreach) on the same params. The ratios transactional / plain are why
transactions are opt-in: the copy is one extra read and write of the state and params per step.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/transactional_step.py
"""
from __future__ import annotations

import torch

import gradkit
from gradkit.bench.measure import device_name
from _timing import best_of, square_params


def step_time(make, total: int, transactional: bool | None) -> float:
    params = square_params(total)
    opt = make(params)
    if transactional is not None:
        opt.transactional = transactional
    return best_of(opt.step, repeat=7, number=5)


def main() -> None:
    torch.set_num_threads(1)
    print(f"machine: {device_name()}, torch {torch.__version__}, 1 thread")
    print(f"{'optimizer':<10} {'params':>10} {'plain ms':>10} {'trans. ms':>10} {'trans./plain':>13} {'torch AdamW ms':>15}")
    recipes = {"adamw": gradkit.optim.AdamW, "sgd": lambda p: gradkit.optim.SGD(p, lr=1e-3, momentum=0.9),
               "lion": gradkit.optim.Lion}
    for total in (2**16, 2**20, 2**22):
        torch_ms = step_time(lambda p: torch.optim.AdamW(p, foreach=True), total, None) * 1e3
        for name, make in recipes.items():
            plain = step_time(make, total, False) * 1e3
            trans = step_time(make, total, True) * 1e3
            print(f"{name:<10} {total:>10} {plain:>10.3f} {trans:>10.3f} {trans / plain:>13.2f} {torch_ms:>15.3f}")


if __name__ == "__main__":
    main()
