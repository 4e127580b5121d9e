"""How much of the gap between LoRA and full fine-tuning LoRA-GA and LoRA-Pro close, on a shifted digits task.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/lora_finetune.py

An MLP (64-128-128-10, GELU) is pretrained on scikit-learn's digits (Adam, 400 steps), then fine-tuned on
the same digits turned by 180 degrees (a shift the pretrained model gets mostly wrong) with SGD (momentum
0.9, batch 64, ``--steps`` steps): all weights (full), LoRA on every linear layer (rank ``--rank``,
alpha = 2 rank, so s = 2), LoRA-GA's initialisation (8 batches of 64, gamma 16), LoRA-Pro's adjusted
gradients (the Sylvester X), both, and the two LoRA-Pro rows again with the Gram matrices damped
(``--damping``, a deviation from the paper's closed form). Each method takes its best learning rate of ``--lrs`` by final
validation loss, averaged over ``--seeds`` seeds (the pretrained model and the batch order change with the
seed). Printed: a markdown table of the shifted task's validation loss and accuracy, and the share of the
LoRA-to-full gap in validation loss each method closes, ``(LoRA - method) / (LoRA - full)``.
"""
from __future__ import annotations

import argparse
import copy

import torch
from torch import nn

from gradkit.bench.measure import device_name
from gradkit.datasets import digits
from gradkit.lora import apply_lora, lora_ga_init, lora_pro_

METHODS = ("full", "lora", "lora-ga", "lora-pro", "lora-ga+pro", "lora-pro-damped", "lora-ga+pro-damped")


def shifted(split):
    return split.inputs.view(-1, 8, 8).flip(1, 2).reshape(-1, 64), split.targets


def pretrain(seed):
    torch.manual_seed(seed)
    data = digits("train")
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(400):
        idx = torch.randint(0, len(data), (64,), generator=gen)
        loss = nn.functional.cross_entropy(model(data.inputs[idx]), data.targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def finetune(base, method, lr, steps, rank, seed, args_damping=0.0):
    model = copy.deepcopy(base)
    x, y = shifted(digits("train"))
    vx, vy = shifted(digits("val"))
    gen = torch.Generator().manual_seed(1000 + seed)
    torch.manual_seed(seed)
    if method != "full":
        apply_lora(model, rank=rank, alpha=2 * rank)
    if method.startswith("lora-ga"):
        batches = [torch.randint(0, len(x), (64,), generator=gen) for _ in range(8)]
        lora_ga_init(model, lambda m, i: nn.functional.cross_entropy(m(x[i]), y[i]), batches, gamma=16.0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        if "pro" in method:
            lora_pro_(model, damping=args_damping if method.endswith("damped") else 0.0)
        opt.step()
    with torch.no_grad():
        out = model(vx)
        return nn.functional.cross_entropy(out, vy).item(), (out.argmax(1) == vy).float().mean().item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--damping", type=float, default=1e-2)
    parser.add_argument("--lrs", type=str, default="0.003,0.01,0.03,0.1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lrs = [float(v) for v in args.lrs.split(",")]
    bases = [pretrain(s) for s in range(args.seeds)]
    vx, vy = shifted(digits("val"))
    with torch.no_grad():
        before = sum((b(vx).argmax(1) == vy).float().mean().item() for b in bases) / len(bases)
    rows = {}
    for method in METHODS:
        best = None
        for lr in lrs:
            runs = [finetune(b, method, lr, args.steps, args.rank, s, args.damping) for s, b in enumerate(bases)]
            loss = sum(r[0] for r in runs) / len(runs)
            acc = sum(r[1] for r in runs) / len(runs)
            if loss == loss and (best is None or loss < best[1]):
                best = (lr, loss, acc)
        rows[method] = best
    print(f"{device_name()}; {args.seeds} seeds, {args.steps} steps, rank {args.rank}; pretrained model's "
          f"accuracy on the shifted validation set before fine-tuning: {before:.3f}\n")
    print("| method | best lr | shifted val loss | shifted val acc | gap closed (loss) |")
    print("|---|---|---|---|---|")
    full, lora = rows["full"][1], rows["lora"][1]
    for method, (lr, loss, acc) in rows.items():
        closed = (lora - loss) / (lora - full) if lora != full else float("nan")
        print(f"| {method} | {lr:g} | {loss:.4f} | {acc:.3f} | {closed:.2f} |")


if __name__ == "__main__":
    main()
