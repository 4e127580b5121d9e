"""Timing helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, which puts this
folder on the import path)."""
from __future__ import annotations

import time

import torch


def best_of(fn, repeat: int = 5, number: int = 3) -> float:
    """Seconds per call of ``fn``: the best of ``repeat`` rounds of ``number`` calls, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number)
    return best


def square_params(total: int, tensors: int = 8) -> list[torch.nn.Parameter]:
    """``tensors`` square float32 params of about ``total`` elements in all, each with a small random gradient."""
    torch.manual_seed(0)
    side = int((total / tensors) ** 0.5)
    params = [torch.nn.Parameter(torch.randn(side, side)) for _ in range(tensors)]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params
