"""Newton-Schulz in bfloat16 against float32 on this machine's CPU (or --device cuda).

Prints, per matrix size, the median time of one 5-step orthogonalization in each dtype, measured in
interleaved rounds in one run, and the ratio bf16 / fp32 (above 1: bfloat16 is slower). This is the
measurement behind the "auto" compute dtype of gradkit.transforms.orthogonalization.

    OMP_NUM_THREADS=1 python benchmarks/newton_schulz_dtype.py
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from gradkit.bench.measure import device_name
from gradkit.transforms.orthogonalization import newton_schulz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="64,256,1024", help="square matrix sizes (default: 64,256,1024)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default: 15)")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cpu = device_name(device)
    print(f"{device.type}: {cpu}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"{'size':>6} {'fp32 ms':>9} {'bf16 ms':>9} {'bf16/fp32':>10}")
    for n in (int(s) for s in args.sizes.split(",")):
        g = torch.randn(n, n, device=device)
        times = {torch.float32: [], torch.bfloat16: []}
        for dtype in times:  # warm-up
            newton_schulz(g, dtype=dtype)
        for _ in range(args.rounds):
            for dtype in times:
                sync()
                start = time.perf_counter()
                newton_schulz(g, dtype=dtype)
                sync()
                times[dtype].append(time.perf_counter() - start)
        fp32, bf16 = (statistics.median(times[d]) * 1e3 for d in (torch.float32, torch.bfloat16))
        print(f"{n:>6} {fp32:>9.3f} {bf16:>9.3f} {bf16 / fp32:>10.2f}")


if __name__ == "__main__":
    main()
