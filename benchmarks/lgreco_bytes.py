"""Bytes all-reduced by DDP without compression, with uniform PowerSGD (rank 4) and with L-GreCo's per-layer
ranks, and the loss each reaches, on scikit-learn's digits.

    OMP_NUM_THREADS=1 PYTHONPATH=src torchrun --standalone --nproc-per-node 2 benchmarks/lgreco_bytes.py

gloo on CPU. Each rank trains the same MLP with a bottleneck (64-512-512-64-512-10, ReLU; layers of unlike shapes) with SGD (lr 0.05, momentum 0.9) on
its half of each batch of 128; all three runs see the same batches. Bytes are the logical sizes of the
tensors this rank hands to all-reduce (the hook's own count; uncompressed: every gradient every step).
Rank 0 prints a markdown table: total bytes, the ratio to uniform PowerSGD, final full-train loss, and
validation accuracy; and the bytes each run needed until its running training loss (mean of 20 steps)
first fell below the target (``--target``).

``--model lm`` trains gradkit's TinyLM (dim 64, 2 blocks, context 64) on the standard library's source
instead (Adam lr 3e-3, 16 windows per step split over the ranks); its loss column is the validation loss on
64 fixed windows, and accuracy is not measured. ``--error-factor`` scales L-GreCo's error budget.
"""
from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from gradkit.bench.measure import device_name
from gradkit.comm import LGreCo, lgreco_hook
from gradkit.datasets import digits, stdlib_text
from gradkit.models import TinyLM


def _wrap(model: nn.Module, mode: str, error_factor: float):
    """DDP around ``model`` with the compression hook of ``mode`` ("none", "uniform" or "lgreco"), the hook's
    state (None without one) and the bytes one uncompressed step sends."""
    ddp = DDP(model)
    state = None
    if mode != "none":
        state = LGreCo(model, ranks=(1, 2, 4, 8, 16, 32), default_rank=4, adaptive=(mode == "lgreco"),
                       warmup_steps=20, update_every=100, error_factor=error_factor)
        ddp.register_comm_hook(state, lgreco_hook)
    return ddp, state, sum(p.numel() * p.element_size() for p in model.parameters())


def train_lm(mode: str, steps: int, rank: int, world: int, error_factor: float):
    data = stdlib_text("train", max_bytes=2_000_000)
    val = stdlib_text("val", max_bytes=200_000)
    torch.manual_seed(0)
    model = TinyLM(dim=64, depth=2, heads=4, context=64)
    ddp, state, per_step_plain = _wrap(model, mode, error_factor)
    opt = torch.optim.Adam(ddp.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    losses, sent = [], []
    for step in range(steps):
        x, y = TinyLM.batch(data, 16, 64, generator=gen)
        x, y = x[rank::world], y[rank::world]
        loss = nn.functional.cross_entropy(ddp(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        sent.append(state.bytes_sent if state else per_step_plain * (step + 1))
    with torch.no_grad():
        vx, vy = TinyLM.batch(val, 64, 64, generator=torch.Generator().manual_seed(7))
        full = nn.functional.cross_entropy(model(vx).flatten(0, 1), vy.flatten()).item()
    return {"losses": losses, "sent": sent, "full": full, "acc": float("nan"),
            "levels": state.levels if state else {}, "history": state.history if state else []}


def train(mode: str, steps: int, rank: int, world: int, error_factor: float):
    data, val = digits("train"), digits("val")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 64),
                          nn.ReLU(), nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
    ddp, state, per_step_plain = _wrap(model, mode, error_factor)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    losses, sent = [], []
    for step in range(steps):
        idx = torch.randint(0, len(data), (128,), generator=gen)[rank::world]
        loss = nn.functional.cross_entropy(ddp(data.inputs[idx]), data.targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        sent.append(state.bytes_sent if state else per_step_plain * (step + 1))
    with torch.no_grad():
        full = nn.functional.cross_entropy(model(data.inputs), data.targets).item()
        acc = (model(val.inputs).argmax(1) == val.targets).float().mean().item()
    return {"losses": losses, "sent": sent, "full": full, "acc": acc, "levels": state.levels if state else {},
            "history": state.history if state else []}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--target", type=float, default=0.1)
    parser.add_argument("--error-factor", type=float, default=1.0)
    parser.add_argument("--model", choices=("mlp", "lm"), default="mlp")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    run = train if args.model == "mlp" else train_lm
    runs = {mode: run(mode, args.steps, rank, world, args.error_factor) for mode in ("none", "uniform", "lgreco")}
    if rank == 0:
        print(f"{device_name()}, {world} gloo ranks, {args.steps} steps, model {args.model}, "
              f"error factor {args.error_factor:g}\n")
        print("| run | bytes sent (rank 0) | vs uniform rank 4 | bytes until running loss < "
              f"{args.target} | final loss (mlp: full train; lm: validation, nats) | val acc |")
        print("|---|---|---|---|---|---|")
        uniform = runs["uniform"]["sent"][-1]
        for mode, r in runs.items():
            run_avg = [sum(r["losses"][max(0, i - 19):i + 1]) / len(r["losses"][max(0, i - 19):i + 1])
                       for i in range(len(r["losses"]))]
            hit = next((i for i, v in enumerate(run_avg) if v < args.target), None)
            until = f"{r['sent'][hit] / 1e6:.2f} MB (step {hit})" if hit is not None else "not reached"
            print(f"| {mode} | {r['sent'][-1] / 1e6:.2f} MB | {r['sent'][-1] / uniform:.2f} | {until} | "
                  f"{r['full']:.4f} | {'-' if r['acc'] != r['acc'] else format(r['acc'], '.3f')} |")
        print(f"\nL-GreCo's ranks per selection (step: ranks in layer order): {runs['lgreco']['history']}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
