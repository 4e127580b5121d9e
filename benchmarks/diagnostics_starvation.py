"""Gradient starvation on a two-feature toy, with and without Spectral Decoupling (Pezeshki et al.,
2021, in kind). Writes docs/reports/diagnostics/starvation.{md,json} and docs/images/diag_starvation.png.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diagnostics_starvation.py

Data: 400 points, labels y = +-1; feature 1 ("easy") = 2y + N(0, 0.2^2), feature 2 ("hard") =
0.5y + N(0, 0.3^2); each alone separates the classes (the hard one up to its overlap). Model: MLP
2-100-1 (ReLU), full-batch SGD lr 0.1, 1,000 steps, seed 0, logistic loss, with or without Spectral
Decoupling (lambda = 0.1 or 1). Every 50 steps: the tangent-feature strengths on the training set
(`gradkit.inspect.feature_strengths`) and the test accuracy with the easy feature shuffled (set to 0),
which is what the network has learned from the hard feature.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gradkit.inspect.starvation import feature_strengths
from gradkit.losses import spectral_decoupling

ROOT = Path(__file__).resolve().parents[1]
SEED, STEPS, LR, SD_WEIGHTS, EVERY = 0, 1000, 0.1, (0.1, 1.0), 50


def data(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    s = (2 * y - 1).float()
    x = torch.stack([2 * s + 0.2 * torch.randn(n, generator=gen), 0.5 * s + 0.3 * torch.randn(n, generator=gen)], 1)
    return x, y


def run(sd: float) -> dict:
    x, y = data(400, SEED)
    xt, yt = data(1000, SEED + 1)
    hard_only = xt.clone()  # the easy feature shuffled across examples: present at full scale, no information
    hard_only[:, 0] = xt[torch.randperm(len(xt), generator=torch.Generator().manual_seed(SEED + 2)), 0]
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(2, 100), nn.ReLU(), nn.Linear(100, 1))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    record = {"step": [], "dominance": [], "effective_features": [], "top_share": [], "hard_only_accuracy": [], "test_accuracy": [],
              "hard_over_easy": []}
    for step in range(STEPS + 1):
        if step % EVERY == 0:
            fs = feature_strengths(model, x, y, top=5)
            with torch.no_grad():
                record["hard_only_accuracy"].append(((model(hard_only)[:, 0] > 0).long() == yt).float().mean().item())
                record["test_accuracy"].append(((model(xt)[:, 0] > 0).long() == yt).float().mean().item())
            probe = xt.clone().requires_grad_(True)
            (slope,) = torch.autograd.grad(model(probe).sum(), probe)
            record["hard_over_easy"].append((slope[:, 1].abs().mean() / slope[:, 0].abs().mean()).item())
            record["step"].append(step)
            record["dominance"].append(fs.dominance)
            record["effective_features"].append(fs.effective_features)
            record["top_share"].append(fs.share.tolist())
        if step == STEPS:
            break
        logits = model(x)[:, 0]
        loss = F.binary_cross_entropy_with_logits(logits, y.float())
        if sd:
            loss = loss + spectral_decoupling(logits, weight=sd)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return record


def main() -> None:
    start = time.perf_counter()
    runs = {"cross-entropy": run(0.0)}
    runs.update({f"+ spectral decoupling (lambda={w:g})": run(w) for w in SD_WEIGHTS})
    seconds = time.perf_counter() - start
    out = ROOT / "docs" / "reports" / "diagnostics"
    out.mkdir(parents=True, exist_ok=True)
    (out / "starvation.json").write_text(json.dumps(runs, indent=1))
    lines = ["| loss | test accuracy | accuracy with the easy feature shuffled | mean abs df/dx_hard over df/dx_easy | strongest feature's share | effective features |",
             "|---|---|---|---|---|---|"]
    for name, r in runs.items():
        lines.append(f"| {name} | {r['test_accuracy'][-1]:.3f} | {r['hard_only_accuracy'][-1]:.3f} | {r['hard_over_easy'][-1]:.2f} | "
                     f"{r['dominance'][-1]:.3f} | {r['effective_features'][-1]:.2f} |")
    lines += ["", f"After {STEPS} steps; strengths are the singular values of the label-weighted tangent features on the "
                  f"400 training points (top 5 kept). {seconds:.0f}s on 1 thread of a shared 2-core CPU."]
    (out / "starvation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for (name, r), colour in zip(runs.items(), ("tab:red", "tab:olive", "tab:green")):
        ax1.plot(r["step"], r["dominance"], color=colour, label=name)
        ax2.plot(r["step"], r["hard_over_easy"], color=colour, label=name)
    ax1.set_xlabel("step")
    ax1.set_ylabel("share of the strongest tangent feature")
    ax1.set_title("feature dominance")
    ax2.set_xlabel("step")
    ax2.set_ylabel("mean |df/dx_hard| / mean |df/dx_easy|")
    ax2.set_title("reliance on the hard feature")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "images" / "diag_starvation.png", dpi=120)
    print("wrote docs/reports/diagnostics/starvation.md and docs/images/diag_starvation.png")


if __name__ == "__main__":
    main()
