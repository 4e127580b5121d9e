"""Activation memory saved for the backward pass with GELU and with Few-Bit GELU (1, 2, 4 bits), and the
loss each reaches, on scikit-learn's digits.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/fewbit_memory.py

An MLP 64-512-512-512-10 with GELU trains with Adam (lr 1e-3, batch 256, ``--steps`` steps, ``--seeds``
seeds, the same batches for every variant). Memory is counted, not timed: every tensor autograd saves in
one training forward pass of a batch is seen through ``torch.autograd.graph.saved_tensors_hooks``, and the
bytes saved inside the activation modules are told apart with forward hooks. Printed: a markdown table of
the activation modules' saved bytes, the whole forward pass's saved bytes, their ratios to GELU, and the
final training loss and validation accuracy (means over seeds).
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from gradkit.bench.measure import device_name
from gradkit.datasets import digits
from gradkit.fewbit import convert_activations


def build(bits, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 512),
                          nn.GELU(), nn.Linear(512, 10))
    if bits:
        convert_activations(model, bits)
    return model


def saved_bytes(model, x):
    inside, counts = [False], {"activation": 0, "all": 0}

    def pack(t):
        n = t.numel() * t.element_size()
        counts["all"] += n
        if inside[0]:
            counts["activation"] += n
        return t

    handles = []
    for m in model:
        if not isinstance(m, nn.Linear):
            handles.append(m.register_forward_pre_hook(lambda *_: inside.__setitem__(0, True)))
            handles.append(m.register_forward_hook(lambda *_: inside.__setitem__(0, False)))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    for h in handles:
        h.remove()
    return counts


def train(bits, steps, seed):
    data, val = digits("train"), digits("val")
    model = build(bits, seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(data), (256,), generator=gen)
        loss = nn.functional.cross_entropy(model(data.inputs[idx]), data.targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        full = nn.functional.cross_entropy(model(data.inputs), data.targets).item()
        acc = (model(val.inputs).argmax(1) == val.targets).float().mean().item()
    return full, acc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = digits("train").inputs[:256]
    base = saved_bytes(build(0, 0), x)
    print(f"{device_name()}; {args.steps} steps, {args.seeds} seeds, batch 256\n")
    print("| activation | saved by activations | ratio | saved in the forward pass | ratio | final train loss "
          "| val acc |")
    print("|---|---|---|---|---|---|---|")
    for bits in (0, 1, 2, 4):
        counts = saved_bytes(build(bits, 0), x)
        runs = [train(bits, args.steps, s) for s in range(args.seeds)]
        loss, acc = sum(r[0] for r in runs) / len(runs), sum(r[1] for r in runs) / len(runs)
        name = "GELU" if not bits else f"Few-Bit GELU, {bits} bit{'s' if bits > 1 else ''}"
        print(f"| {name} | {counts['activation'] / 1024:.0f} KiB | {counts['activation'] / base['activation']:.4f} | "
              f"{counts['all'] / 1024:.0f} KiB | {counts['all'] / base['all']:.3f} | {loss:.4f} | {acc:.3f} |")


if __name__ == "__main__":
    main()
