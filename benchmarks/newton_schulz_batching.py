"""Batched Newton-Schulz (one bmm iteration per distinct shape) vs one iteration per matrix.

Run: OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/newton_schulz_batching.py
Prints the median time of each and their ratio, measured in one run on this machine.
"""
from __future__ import annotations

import statistics
import time

import torch

from gradkit.transforms.orthogonalization import newton_schulz, orthogonalize


def median_time(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    # a small transformer's hidden matrices: many equal shapes (attention and MLP blocks)
    shapes = [(64, 64)] * 16 + [(64, 256)] * 8 + [(256, 64)] * 8
    mats = [torch.randn(s) for s in shapes]
    for dtype in (torch.float32, torch.bfloat16):
        loop = median_time(lambda: [newton_schulz(m, dtype=dtype) for m in mats])
        batched = median_time(lambda: orthogonalize(mats, dtype=dtype))
        print(f"{len(mats)} matrices, NS in {str(dtype).removeprefix('torch.')}: per-matrix loop {loop * 1e3:.2f} ms, "
              f"batched {batched * 1e3:.2f} ms, loop / batched = {loop / batched:.2f}")


if __name__ == "__main__":
    main()
