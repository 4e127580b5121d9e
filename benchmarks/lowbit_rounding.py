"""bfloat16 params: stochastic rounding of the update against round-to-nearest, measured against float32.

The digits MLP is trained three times from the same weights and batches with AdamW (lr 1e-4, 1500 steps,
small steps that round-to-nearest partly loses in bfloat16): float32 params; bfloat16 params written
with round-to-nearest; bfloat16 params written with ``set_param_rounding("stochastic")``. Printed: the
validation loss of each and the distance of each bfloat16 run from the float32 run (relative L2 of the
params, and |val loss difference|).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/lowbit_rounding.py
"""
from __future__ import annotations

import torch

import gradkit
from gradkit.bench.measure import device_name
from gradkit.datasets import digits
from gradkit.models import digits_mlp

STEPS, BATCH, LR = 1500, 128, 1e-4


def run(dtype: torch.dtype, rounding: str):
    train, val = digits("train"), digits("val")
    torch.manual_seed(0)
    model = digits_mlp().to(dtype)
    opt = gradkit.optim.AdamW(model.parameters(), lr=LR)
    opt.set_param_rounding(rounding, seed=0)
    g = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        idx = torch.randint(0, len(train), (BATCH,), generator=g)
        opt.zero_grad(set_to_none=True)
        logits = model(train.inputs[idx].to(dtype)).float()
        torch.nn.functional.cross_entropy(logits, train.targets[idx]).backward()
        opt.step()
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(val.inputs.to(dtype)).float(), val.targets).item()
    return torch.cat([p.detach().float().reshape(-1) for p in model.parameters()]), loss


def main() -> None:
    torch.set_num_threads(1)
    print(f"machine: {device_name()}, torch {torch.__version__}, 1 thread; AdamW lr={LR}, {STEPS} steps")
    ref, ref_loss = run(torch.float32, "nearest")
    print(f"| params | rounding | val loss | rel. L2 to float32 | abs. val-loss gap |\n|---|---|---|---|---|")
    print(f"| float32 | - | {ref_loss:.4f} | 0 | 0 |")
    for rounding in ("nearest", "stochastic"):
        w, loss = run(torch.bfloat16, rounding)
        print(f"| bfloat16 | {rounding} | {loss:.4f} | {((w - ref).norm() / ref.norm()).item():.4f} | "
              f"{abs(loss - ref_loss):.4f} |")


if __name__ == "__main__":
    main()
