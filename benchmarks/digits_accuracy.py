"""Digits MLP (64-64-64-10), 300 steps of batch 128: validation accuracy of each optimizer at its best lr of a small grid.

Run: OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/digits_accuracy.py
"""
from __future__ import annotations

import torch

import gradkit
from gradkit.datasets import digits
from gradkit.models import digits_mlp
from gradkit.optim.xgrad import predicted_weights

STEPS, BATCH = 300, 128


def autoclip_adamw(params, lr):
    return gradkit.Optimizer(params, gradkit.chain(gradkit.autoclip(10.0), gradkit.scale_by_adam(),
                                                   gradkit.add_decayed_weights(0.01), gradkit.scale_by_learning_rate()),
                             defaults={"lr": lr})


CANDIDATES = {
    "AdamW (baseline)": (lambda p, lr: gradkit.optim.AdamW(p, lr=lr), (1e-3, 3e-3, 1e-2)),
    "Grams": (lambda p, lr: gradkit.optim.Grams(p, lr=lr), (1e-3, 3e-3, 1e-2)),
    "AdaMomentum": (lambda p, lr: gradkit.optim.AdaMomentum(p, lr=lr), (1e-3, 3e-3, 1e-2)),
    "SGD-SaI": (lambda p, lr: gradkit.optim.SGDSaI(p, lr=lr), (1.0, 3.0, 10.0)),
    "Muon (+AdamW 3e-3)": (lambda p, lr: gradkit.optim.Muon(p, lr=lr, adamw_lr=3e-3), (0.01, 0.03, 0.1)),
    "trust region, linf": (lambda p, lr: gradkit.optim.TrustRegionMomentum(p, lr=lr, norm="linf"), (1e-3, 3e-3, 1e-2)),
    "trust region, l2": (lambda p, lr: gradkit.optim.TrustRegionMomentum(p, lr=lr, norm="l2"), (0.1, 0.3, 1.0)),
    "AutoClip(p=10) + AdamW": (autoclip_adamw, (1e-3, 3e-3, 1e-2)),
    "XGrad + AdamW": (lambda p, lr: gradkit.optim.AdamW(p, lr=lr), (1e-3, 3e-3, 1e-2)),
}


def run(make, lr, xgrad: bool) -> float:
    train, val = digits("train"), digits("val")
    torch.manual_seed(0)
    model = digits_mlp()
    opt = make(model.parameters(), lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        idx = torch.randint(0, len(train), (BATCH,), generator=g)
        opt.zero_grad(set_to_none=True)
        if xgrad:
            with predicted_weights(opt):
                torch.nn.functional.cross_entropy(model(train.inputs[idx]), train.targets[idx]).backward()
        else:
            torch.nn.functional.cross_entropy(model(train.inputs[idx]), train.targets[idx]).backward()
        opt.step()
    with torch.no_grad():
        return (model(val.inputs).argmax(1) == val.targets).float().mean().item()


def main() -> None:
    print(f"| optimizer | best lr | val accuracy ({STEPS} steps) |\n|---|---|---|")
    for name, (make, lrs) in CANDIDATES.items():
        results = {lr: run(make, lr, xgrad=name.startswith("XGrad")) for lr in lrs}
        best = max(results, key=results.get)
        print(f"| {name} | {best:g} | {results[best]:.3f} |")


if __name__ == "__main__":
    main()
