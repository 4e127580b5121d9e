"""How fast a compiled AdamW step with int8 blockwise state can be here, without gradkit's machinery.

Two hand-written programs, compiled with torch.compile (Inductor) and timed on one (rows, 256) float32
param (by default 16384 rows, 2^22 values) with the hyperparameters compiled in as constants: AdamW
with float32 moments, and AdamW whose moments are int8 codes with one float32 scale per 256-value block
(the linear signed map for the first moment, the square-root map for the second, as
``state_dtype="int8"``), decoded, stepped and re-encoded in the program (the block scales first, then
codes and param in one pass). Their ratio is a floor for gradkit's fused int8 step against its fused
float32 step on this CPU: decoding, the block maxima and the encode are arithmetic the float32 step does
not do. No assertions: the ratio goes into the README.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/lowbit_floor.py
    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/lowbit_floor.py --threads 2 --rows 65536
"""
from __future__ import annotations

import argparse

import torch

from gradkit.bench.measure import device_name
from _timing import best_of

BLOCK = 256
LR, BETA1, BETA2, EPS, STEP = 1e-3, 0.9, 0.999, 1e-8, 10
CORRECTION1, CORRECTION2 = 1 - BETA1 ** STEP, 1 - BETA2 ** STEP


def float32_step(p, g, m, v):
    m.lerp_(g, 1 - BETA1)
    v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
    p.add_(m / (v.sqrt() / CORRECTION2 ** 0.5 + EPS), alpha=-LR / CORRECTION1)


def int8_step(p, g, m_codes, m_scales, v_codes, v_scales):
    m = m_codes.float() * (m_scales / 127).unsqueeze(1)
    root = (v_codes.float() + 129) * (v_scales / 256).unsqueeze(1)
    m = m.lerp(g, 1 - BETA1)
    v = root * root * BETA2 + (1 - BETA2) * g * g
    root = v.sqrt()
    p.add_(m / (root / CORRECTION2 ** 0.5 + EPS), alpha=-LR / CORRECTION1)
    new_m_scales = torch.maximum(m.amax(1), m.amin(1).neg())
    new_v_scales = v.amax(1).sqrt()
    m_codes.copy_((m * (127 / new_m_scales.clamp_min(2.0 ** -100)).unsqueeze(1)).round())
    v_codes.copy_((root * (256 / new_v_scales.clamp_min(2.0 ** -80)).unsqueeze(1)).round().clamp(1, 256) - 129)
    m_scales.copy_(new_m_scales)
    v_scales.copy_(new_v_scales)


def timed(step, *args) -> float:
    compiled = torch.compile(step, fullgraph=True, options={"size_asserts": False})
    compiled(*args)
    return best_of(lambda: compiled(*args), repeat=12, number=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--rows", type=int, default=16384, help="blocks of 256 values in the param (default 16384)")
    args = parser.parse_args()
    rows = args.rows
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {device_name()}, torch {torch.__version__}, {args.threads} thread(s), {rows * BLOCK} values")
    p, g = torch.randn(rows, BLOCK), torch.randn(rows, BLOCK) * 1e-3
    base = timed(float32_step, p, g, torch.zeros(rows, BLOCK), torch.zeros(rows, BLOCK))
    codes = (torch.zeros(rows, BLOCK, dtype=torch.int8), torch.rand(rows),
             torch.full((rows, BLOCK), -128, dtype=torch.int8), torch.rand(rows))
    quantized = timed(int8_step, p, g, *codes)
    print(f"float32 moments: {base * 1e3:.2f} ms   int8 moments: {quantized * 1e3:.2f} ms   "
          f"ratio {quantized / base:.2f}")


if __name__ == "__main__":
    main()
