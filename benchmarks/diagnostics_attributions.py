"""Pictures of MoreauGrad (plain, sparse, group-sparse) and NormGrad (per layer and combined) on four
validation digits. Writes docs/images/diag_moreaugrad.png and docs/images/diag_normgrad.png.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diagnostics_attributions.py

The model is the `gradkit explain` DigitsCNN (Adam, 6 epochs, seed 0); every method explains the
label; noise and smoothing use the registered defaults with a generator seeded 0. The printed table is
the fraction of exactly-zero attributions per method (the sparsity the variants promise).
"""
from __future__ import annotations

from pathlib import Path

import torch

from gradkit.datasets import digits
from gradkit.explain import get_method, normgrad, saliency
from gradkit.explain.cli import train_digits_cnn
from gradkit.explain.plot import plot_attributions

ROOT = Path(__file__).resolve().parents[1]
INDICES = [7, 11, 23, 42]


def main() -> None:
    model = train_digits_cnn(epochs=6, seed=0)
    val = digits("val", image=True)
    x, y = val.inputs[INDICES], val.targets[INDICES]
    titles = [f"label {int(t)}" for t in y]
    moreau = {"saliency": saliency(model, x, y)}
    for name in ("moreaugrad", "moreaugrad_sparse", "moreaugrad_group"):
        moreau[name] = get_method(name)(model, x, y, generator=torch.Generator().manual_seed(0))
    plot_attributions(x, moreau, ROOT / "docs" / "images" / "diag_moreaugrad.png", row_titles=titles)
    print("| method | exactly-zero pixels |\n|---|---|")
    for name, a in moreau.items():
        print(f"| {name} | {(a == 0).float().mean().item():.2f} |")
    norm = {
        "NormGrad conv1": normgrad(model, x, y, layers=["conv1"]),
        "NormGrad conv2": normgrad(model, x, y, layers=["conv2"]),
        "product of both": normgrad(model, x, y),
        "sum of both": normgrad(model, x, y, combine="sum"),
        "conv2 weight": normgrad(model, x, y, layers=["conv2"], variant="conv"),
    }
    plot_attributions(x, norm, ROOT / "docs" / "images" / "diag_normgrad.png", row_titles=titles)
    print("wrote docs/images/diag_moreaugrad.png and docs/images/diag_normgrad.png")


if __name__ == "__main__":
    main()
