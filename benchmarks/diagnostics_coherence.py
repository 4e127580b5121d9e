"""Gradient coherence over training on digits, real labels against random labels (Chatterjee &
Zielinski's experiment, in kind). Writes docs/reports/diagnostics/coherence.{md,json} and
docs/images/diag_coherence.png.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diagnostics_coherence.py

Settings: the digits MLP (64-128-128-10, ReLU), SGD lr 0.05 batch 32, 30 epochs, seed 0; coherence of
the per-example loss gradients of a fixed sample of m = 256 training examples, every half epoch.
Random labels are a seeded uniform draw per training example (the same examples, new labels).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gradkit.datasets import digits
from gradkit.inspect.coherence import coherence
from gradkit.models import digits_mlp

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, LR, BATCH, M, SEED = 30, 0.05, 32, 256, 0


def run(labels: str) -> dict:
    data = digits("train")
    x, y = data.inputs, data.targets
    if labels == "random":
        y = torch.randint(0, 10, y.shape, generator=torch.Generator().manual_seed(SEED + 1))
    torch.manual_seed(SEED)
    model = digits_mlp(hidden=128, depth=2)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(SEED)
    probe = torch.randperm(len(y), generator=torch.Generator().manual_seed(SEED + 2))[:M]
    steps_per_epoch = (len(y) + BATCH - 1) // BATCH
    every = steps_per_epoch // 2
    record = {"step": [], "alpha": [], "m_coherence": [], "train_accuracy": [], "loss": []}

    def measure(step):
        result = coherence(model, x[probe], y[probe], chunk_size=128)
        with torch.no_grad():
            out = model(x)
            record["train_accuracy"].append((out.argmax(1) == y).float().mean().item())
            record["loss"].append(F.cross_entropy(out, y).item())
        record["step"].append(step)
        record["alpha"].append(result.alpha)
        record["m_coherence"].append(result.m_coherence)

    step = 0
    measure(0)
    for _ in range(EPOCHS):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), BATCH):
            idx = order[start:start + BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % every == 0:
                measure(step)
    return record


def main() -> None:
    start = time.perf_counter()
    runs = {labels: run(labels) for labels in ("real", "random")}
    seconds = time.perf_counter() - start
    out = ROOT / "docs" / "reports" / "diagnostics"
    out.mkdir(parents=True, exist_ok=True)
    (out / "coherence.json").write_text(json.dumps({"settings": {"epochs": EPOCHS, "lr": LR, "batch": BATCH, "m": M, "seed": SEED}, "runs": runs}, indent=1))

    def summary(r, i):
        return f"{r['m_coherence'][i]:.1f} (alpha {r['alpha'][i]:.3f}, train acc {r['train_accuracy'][i]:.2f})"

    lines = ["| labels | m-coherence at init | after 1 epoch | mean over training | at the end |", "|---|---|---|---|---|"]
    for labels, r in runs.items():
        mean = sum(r["m_coherence"]) / len(r["m_coherence"])
        lines.append(f"| {labels} | {summary(r, 0)} | {summary(r, 2)} | {mean:.1f} | {summary(r, -1)} |")
    ratio = [a / b for a, b in zip(runs["real"]["m_coherence"], runs["random"]["m_coherence"])]
    early = slice(0, 7)  # init and the first 3 epochs, while the real labels are being learned
    real_early, random_early = runs["real"]["m_coherence"][early], runs["random"]["m_coherence"][early]
    lines.append("")
    lines.append(f"m = {M}: m-coherence is {M} for identical per-example gradients and 1 for orthogonal ones. "
                 f"In the first 3 epochs (7 measurements) real labels stay between {min(real_early):.1f} and {max(real_early):.1f}, "
                 f"random labels between {min(random_early):.1f} and {max(random_early):.1f}. Over the whole run the real/random "
                 f"ratio has median {sorted(ratio)[len(ratio) // 2]:.1f}x and minimum {min(ratio):.1f}x: once the real labels are "
                 f"fitted (training accuracy > 0.95) their coherence falls and becomes noisy, sometimes down to the random level. "
                 f"Both runs took {seconds:.0f}s on 1 thread of a shared 2-core CPU.")
    (out / "coherence.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for labels, colour in (("real", "tab:blue"), ("random", "tab:red")):
        r = runs[labels]
        ax1.plot(r["step"], r["m_coherence"], color=colour, label=f"{labels} labels")
        ax2.plot(r["step"], r["train_accuracy"], color=colour, label=f"{labels} labels")
    ax1.set_yscale("log")
    ax1.set_xlabel("SGD step")
    ax1.set_ylabel(f"m-coherence (m = {M})")
    ax1.set_title("coherence of per-example gradients")
    ax2.set_xlabel("SGD step")
    ax2.set_ylabel("training accuracy")
    ax2.set_title("fit of the training set")
    for ax in (ax1, ax2):
        ax.legend()
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "images" / "diag_coherence.png", dpi=120)
    print("wrote docs/reports/diagnostics/coherence.md and docs/images/diag_coherence.png")


if __name__ == "__main__":
    main()
