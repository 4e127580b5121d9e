"""Does stacking same-shape tensors pay for SOAP's and Shampoo's matrix work on CPU? Per-tensor calls (what
the transforms do) against one batched call per shape (``torch.stack`` + batched ``matmul`` / ``eigh`` /
``qr``, stacking and unstacking included), on the stdlib-LM model's matrix shapes (TinyLM dim 64, depth 2:
4 x (168, 64), 2 x (256, 64), 2 x (192, 64), 2 x (64, 64), 2 x (64, 168)).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/frontier_batching.py

Work timed, per step:
  rotations  SOAP's three contractions Q_0^T X Q_1 (gradient, momentum, back-rotation) and both grams
  roots      an eigendecomposition per factor (Shampoo's inverse roots, SOAP's first basis)
  refresh    SOAP's power step and QR per factor
Prints the batched / per-tensor time ratio (< 1: batching pays) from one run: 15 interleaved rounds of 10
calls each, median. Not a test.
"""
from __future__ import annotations

import statistics
import time

import torch

from gradkit.transforms._kronecker import contract, gram

SHAPES = [(168, 64)] * 4 + [(256, 64)] * 2 + [(192, 64)] * 2 + [(64, 64)] * 2 + [(64, 168)] * 2


def setup():
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(s, generator=g) for s in SHAPES]
    ms = [torch.randn(s, generator=g) for s in SHAPES]
    factors = [[gram(torch.randn(s, generator=g), i) for i in range(2)] for s in SHAPES]
    bases = [[torch.linalg.qr(torch.randn(d, d, generator=g))[0] for d in s] for s in SHAPES]
    groups = {}
    for j, s in enumerate(SHAPES):
        groups.setdefault(s, []).append(j)
    return xs, ms, factors, bases, groups


def main() -> None:
    xs, ms, factors, bases, groups = setup()

    def rotations_each():
        out = []
        for x, m, q in zip(xs, ms, bases):
            r, rm = contract(x, q), contract(m, q)
            out.append((contract(rm / (r.abs() + 1), q, transpose=True), gram(x, 0), gram(x, 1)))
        return out

    def rotations_stacked():
        out = []
        for idx in groups.values():
            x, m = torch.stack([xs[j] for j in idx]), torch.stack([ms[j] for j in idx])
            a, b = torch.stack([bases[j][0] for j in idx]), torch.stack([bases[j][1] for j in idx])
            r, rm = a.mT @ x @ b, a.mT @ m @ b
            out.append(((a @ (rm / (r.abs() + 1)) @ b.mT).unbind(0), (x @ x.mT).unbind(0), (x.mT @ x).unbind(0)))
        return out

    square = {}
    for j, s in enumerate(SHAPES):
        for i, d in enumerate(s):
            square.setdefault(d, []).append(factors[j][i])

    def roots_each():
        return [torch.linalg.eigh(f) for fs in square.values() for f in fs]

    def roots_stacked():
        return [torch.linalg.eigh(torch.stack(fs)) for fs in square.values()]

    pairs = [(f, bases[j][i]) for j, s in enumerate(SHAPES) for i, f in enumerate(factors[j])]
    by_dim = {}
    for f, q in pairs:
        by_dim.setdefault(f.shape[0], []).append((f, q))

    def refresh_each():
        return [torch.linalg.qr(f @ q) for f, q in pairs]

    def refresh_stacked():
        return [torch.linalg.qr(torch.stack([f for f, _ in fq]) @ torch.stack([q for _, q in fq])) for fq in by_dim.values()]

    print(f"threads={torch.get_num_threads()} torch={torch.__version__}")
    print(f"{'work':<10} {'per tensor ms':>14} {'stacked ms':>11} {'stacked / per tensor':>21}")
    for name, each, stacked in [("rotations", rotations_each, rotations_stacked), ("roots", roots_each, roots_stacked),
                                ("refresh", refresh_each, refresh_stacked)]:
        each(), stacked()
        a, b = [], []
        for _ in range(15):
            for fn, times in ((each, a), (stacked, b)):
                start = time.perf_counter()
                for _ in range(10):
                    fn()
                times.append((time.perf_counter() - start) * 100)
        ea, st = statistics.median(a), statistics.median(b)
        print(f"{name:<10} {ea:14.2f} {st:11.2f} {st / ea:21.2f}")


if __name__ == "__main__":
    main()
