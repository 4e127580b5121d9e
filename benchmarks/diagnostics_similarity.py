"""Layer-by-layer SVCCA (and linear CKA) of the digits CNN's representations against their final
state, over training: do lower layers converge earlier (Raghu et al., 2017)? Writes
docs/reports/diagnostics/similarity.{md,json} and docs/images/diag_similarity.png.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diagnostics_similarity.py

Settings: DigitsCNN (16 channels), Adam lr 1e-2, batch 64, 8 epochs, seed 0 (the `gradkit explain`
recipe, two epochs longer). Snapshots every 4 steps in the first epoch, then every epoch.
Representations of 300 validation images in eval mode: conv1 and conv2 blocks (after ReLU; every
spatial position a data point, channels the neurons), the pooled features, the logits. SVCCA keeps
99% of the variance, as in the paper. A layer has "converged" at the first snapshot from which its
SVCCA with the final representation stays >= 0.95.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gradkit.datasets import digits
from gradkit.inspect.similarity import flatten_positions, linear_cka, svcca
from gradkit.models import DigitsCNN

ROOT = Path(__file__).resolve().parents[1]
SEED, EPOCHS, BATCH, LR, PROBE, THRESHOLD = 0, 8, 64, 1e-2, 300, 0.95
LAYERS = ("conv1", "conv2", "pooled", "logits")


def representations(model: DigitsCNN, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        a1 = F.relu(model.bn1(model.conv1(x)))
        a2 = F.max_pool2d(F.relu(model.bn2(model.conv2(a1))), 2)
        pooled = a2.mean(dim=(2, 3))
        return {"conv1": flatten_positions(a1), "conv2": flatten_positions(a2), "pooled": pooled, "logits": model.head(pooled)}


def main() -> None:
    start = time.perf_counter()
    train, val = digits("train", image=True), digits("val", image=True)
    probe = val.inputs[:PROBE]
    torch.manual_seed(SEED)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(SEED)
    snapshots, steps, step = [], [], 0

    def snap():
        model.eval()
        snapshots.append(representations(model, probe))
        steps.append(step)
        model.train()

    snap()
    for epoch in range(EPOCHS):
        order = torch.randperm(len(train), generator=gen)
        for start_i in range(0, len(order), BATCH):
            idx = order[start_i:start_i + BATCH]
            model.train()
            loss = F.cross_entropy(model(train.inputs[idx]), train.targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if epoch == 0 and step % 4 == 0:
                snap()
        if epoch > 0 or step % 4:
            snap()
    model.eval()
    with torch.no_grad():
        accuracy = (model(val.inputs).argmax(1) == val.targets).float().mean().item()
    final = snapshots[-1]
    curves = {layer: {"svcca": [svcca(s[layer], final[layer]) for s in snapshots],
                      "cka": [linear_cka(s[layer], final[layer]) for s in snapshots]} for layer in LAYERS}

    def converged(values):
        for i in range(len(values)):
            if all(v >= THRESHOLD for v in values[i:]):
                return steps[i]
        return steps[-1]

    when = {layer: converged(curves[layer]["svcca"]) for layer in LAYERS}
    when_cka = {layer: converged(curves[layer]["cka"]) for layer in LAYERS}
    ordered = all(when[a] <= when[b] for a, b in zip(LAYERS, LAYERS[1:]))
    seconds = time.perf_counter() - start
    out = ROOT / "docs" / "reports" / "diagnostics"
    out.mkdir(parents=True, exist_ok=True)
    (out / "similarity.json").write_text(json.dumps({"steps": steps, "curves": curves, "converged_step_svcca": when,
                                                     "converged_step_cka": when_cka, "val_accuracy": accuracy}, indent=1))
    early = next(i for i, s in enumerate(steps) if s >= 20)
    lines = ["| layer | SVCCA with final at step 20 | converged (SVCCA >= 0.95 from) step | CKA with final at step 20 | converged (CKA >= 0.95 from) step |",
             "|---|---|---|---|---|"]
    for layer in LAYERS:
        lines.append(f"| {layer} | {curves[layer]['svcca'][early]:.3f} | {when[layer]} | {curves[layer]['cka'][early]:.3f} | {when_cka[layer]} |")
    verdict = ("Lower layers converge earlier: the convergence steps increase from conv1 to the logits, as the paper observes."
               if ordered else "The convergence steps do not increase monotonically from conv1 to the logits at this scale; see the table.")
    lines += ["", f"{verdict} Training: {step} steps ({EPOCHS} epochs), validation accuracy {accuracy:.3f}; "
                  f"{seconds:.0f}s on 1 thread of a shared 2-core CPU."]
    (out / "similarity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, key, title in ((axes[0], "svcca", "SVCCA"), (axes[1], "cka", "linear CKA")):
        for layer in LAYERS:
            ax.plot([max(s, 1) for s in steps], curves[layer][key], label=layer)
        ax.set_xscale("log")
        ax.set_xlabel("training step (log)")
        ax.set_title(f"{title} of each layer with its final representation")
        ax.axhline(THRESHOLD, color="grey", linewidth=0.8, linestyle="--")
    axes[0].set_ylabel("similarity")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "images" / "diag_similarity.png", dpi=120)
    print("wrote docs/reports/diagnostics/similarity.md and docs/images/diag_similarity.png")


if __name__ == "__main__":
    main()
