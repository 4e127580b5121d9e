"""Gradient flow through one untrained 2D pLSTM layer on a 32x32 grid: P-mode and D-mode, with and
without the paper's normalisation, gates held at random values (as in tests/inspect/test_gradient_flow.py).

Writes docs/images/plstm_propagation.png and prints the decay (value at the farthest distance relative to
distance 1) for each layer, plus the CPU time of the parallel and the recurrent forms on one grid:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/plstm_propagation.py
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from gradkit.bench.measure import device_name
from gradkit.inspect import distance_profile, input_gradient_map, plot_gradient_flow
from gradkit.models import PLSTM2D

SIDE, DIM, HEADS = 32, 8, 4


def held_gates(layer: PLSTM2D, generator: torch.Generator) -> None:
    """Random gate values per node, computed once from a random context and then held fixed."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("transition"):
                if name.endswith("bias"):
                    p.fill_(0.9)
                else:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.2 / p.shape[-1] ** 0.5)
            elif name == "orientation_weight" or (name.startswith(("source", "mark")) and name.endswith("weight")):
                p.copy_(torch.randn(p.shape, generator=generator))
        fixed = layer.gates(torch.randn(1, SIDE, SIDE, DIM, generator=generator))
    layer.gates = lambda _x: dict(fixed)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the layers' q, k, v and output weights
    maps, profiles = {}, {}
    origin = (SIDE - 1, SIDE - 1)
    for mode in ("P", "D"):
        for normalization in ("paper", "none"):
            g = torch.Generator().manual_seed(4)
            layer = PLSTM2D(DIM, HEADS, mode=mode, orientations=(0,), normalization=normalization)
            held_gates(layer, g)
            x = torch.randn(1, SIDE, SIDE, DIM, generator=g)
            name = f"{mode}-mode, {'normalised' if normalization == 'paper' else 'unnormalised'}"
            flow = input_gradient_map(layer, x, position=origin, layout="grid")
            d, v = distance_profile(flow, origin)
            maps[name], profiles[name] = flow, (d[1:], v[1:] / v[1])
            print(f"{name:26s} gradient norm at distance {int(d[-1])} / at distance 1: {float(v[-1] / v[1]):.3g}, "
                  f"range over distances [{float((v[1:] / v[1]).min()):.3g}, {float((v[1:] / v[1]).max()):.3g}]")
    machine = f"{device_name()}, torch {torch.__version__}, 1 thread"
    out = Path(__file__).resolve().parents[1] / "docs" / "images" / "plstm_propagation.png"
    plot_gradient_flow(maps, None, out, profiles=profiles, machine=machine, ylabel="relative to distance 1",
                       title=f"|d out(31, 31) / d x(p)|, one layer, random held gates, {SIDE}x{SIDE} grid (relative to distance 1 below)")
    print(f"wrote {out}")

    # Cost of the two forms on one grid (CPU seconds, one run; ratios are what carry over).
    layer = PLSTM2D(DIM, HEADS, mode="D")
    x = torch.randn(8, 16, 16, DIM)
    for form in ("parallel", "recurrent"):
        layer.form = form
        start = time.process_time()
        layer(x).sum().backward()
        print(f"{form:9s} forward+backward, batch 8, 16x16 grid, 4 orientations: {time.process_time() - start:.2f} CPU s")


if __name__ == "__main__":
    main()
