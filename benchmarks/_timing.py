"""Timing helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, which puts this
folder on the import path)."""
from __future__ import annotations

import time


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
