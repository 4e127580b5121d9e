"""Arrow-pointing extrapolation: pLSTM vs a ViT of matched size vs a CNN, trained at 48 px, tested at 96 px.

Trains the three models of ``gradkit bench --task arrow-pointing`` side by side (same batches), longer than
the arena's default, one seed per process, and saves each seed's accuracies (JSON) and weights:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/plstm_arrow.py train --seed 0 --out runs/plstm_arrow
    (seeds 1 and 2 likewise, e.g. as three processes at once)

then the table (mean +- std over the seeds, written to OUT/summary.md) and the figure
docs/images/plstm_arrow_gradient_flow.png (gradient-flow heat maps of the trained seed-0 models at 2x and
the decay of gradient flow with distance from the grid's centre):

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/plstm_arrow.py report --out runs/plstm_arrow
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time
from pathlib import Path

import torch

import gradkit
from gradkit.bench.measure import device_name
from gradkit.bench.tasks.arrow_pointing import ArrowPointing

STEPS, BATCH, LR, WARMUP = 800, 32, 3e-3, 50
FIGURES = Path(__file__).resolve().parents[1] / "docs" / "images"


def train(seed: int, out: Path, steps: int) -> None:
    task = ArrowPointing(steps=steps, eval_every=steps, batch_size=BATCH, val_images=512)
    data = task.load(torch.device("cpu"))
    torch.manual_seed(seed)
    model = task.build_model()
    opt = gradkit.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    generator = torch.Generator().manual_seed(seed)
    start, cpu0 = time.perf_counter(), time.process_time()
    curve = []
    for step in range(1, steps + 1):
        loss = task.losses(model, task.sample(data, generator))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        if step % 100 == 0:
            curve.append((step, float(loss)))
            print(f"seed {seed} step {step} loss {float(loss):.4f}", flush=True)
    model.eval()
    result = {"seed": seed, "steps": steps, "batch": BATCH, "lr": LR, "curve": curve,
              "val": task.evaluate(model, data, "val"), "train": task.evaluate(model, data, "train"),
              "wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu0,
              "machine": f"{device_name()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
              "params": {k: sum(p.numel() for p in m.parameters()) for k, m in model.items()}}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"seed{seed}.json").write_text(json.dumps(result, indent=1))
    torch.save(model.state_dict(), out / f"seed{seed}.pt")
    print(json.dumps(result["val"], indent=1))


def report(out: Path, figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from gradkit.bench.tasks.arrow_pointing import arrow_pointing_images, build_arrow_models
    import torch.nn.functional as F

    from gradkit.inspect.gradient_flow import block_gradient_norms, distance_profile, input_gradient_map, plot_gradient_flow

    runs = [json.loads(p.read_text()) for p in sorted(out.glob("seed*.json"))]
    if not runs:
        raise SystemExit(f"no seed*.json in {out}; run the train command first")
    lines = [f"arrow-pointing, {runs[0]['steps']} steps of batch {runs[0]['batch']}, AdamW lr {runs[0]['lr']}, "
             f"{len(runs)} seeds; machine: {runs[0]['machine']}", "",
             "| model | params | accuracy 48 px (1x) | accuracy 96 px (2x) |", "|---|---|---|---|"]
    summary = {}
    for name in ("plstm", "vit", "cnn"):
        cells = []
        for tag in ("1x", "2x"):
            vals = [100 * r["val"][f"{name}_acc_{tag}"] for r in runs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            summary[f"{name}_{tag}"] = (statistics.fmean(vals), sd)
            cells.append(f"{statistics.fmean(vals):.1f} ± {sd:.1f}")
        lines.append(f"| {name} | {runs[0]['params'][name]} | {cells[0]} | {cells[1]} |")
    gap = [100 * (r["val"]["plstm_acc_2x"] - r["val"]["vit_acc_2x"]) for r in runs]
    lines += ["", f"pLSTM minus ViT at 2x: {statistics.fmean(gap):.1f} ± {statistics.stdev(gap) if len(gap) > 1 else 0:.1f} points "
              f"(per seed: {', '.join(f'{g:.1f}' for g in gap)})",
              f"CPU seconds per seed (all three models): {statistics.fmean(r['cpu_s'] for r in runs):.0f}"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    models = build_arrow_models(("plstm", "vit", "cnn"), image_size=48, patch_size=6, dim=32)
    models.load_state_dict(torch.load(out / "seed0.pt"))
    models.eval()
    images, labels = arrow_pointing_images(64, 96, torch.Generator().manual_seed(7))
    named = {"pLSTM": models["plstm"], "ViT": models["vit"], "CNN": models["cnn"]}
    # Heat maps: the gradient of the true class's logit; curves: the gradient of the patch features at the
    # grid's centre, against distance from it (16 images; one vector-Jacobian product per feature).
    maps = {name: input_gradient_map(net, images, target=labels, patch_size=6) for name, net in named.items()}
    centre = (8, 8)
    profiles = {name: distance_profile(input_gradient_map(net.features, images[:16], position=centre, patch_size=6), centre)
                for name, net in named.items()}
    profiles = {name: (d, v / v[1]) for name, (d, v) in profiles.items()}
    path = figure
    plot_gradient_flow(maps, images[0, 0], path, profiles=profiles, machine=runs[0]["machine"],
                       ylabel=f"|d features{centre} / d patch|, relative to distance 1",
                       title=f"trained at 48 px for {runs[0]['steps']} steps, seen at 96 px (seed 0): "
                             "|d logit(true class) / d patch|, mean over 64 images")
    print(f"wrote {path}")

    # The gradient of the loss reaching each block's output, over depth (same 64 images at 2x).
    depth_lines = ["", "Gradient norm of the 2x loss at each block's output (seed 0, 64 images at 96 px):"]
    for name in ("pLSTM", "ViT"):
        norms = block_gradient_norms(named[name], images, lambda logits: F.cross_entropy(logits, labels))
        depth_lines.append(f"- {name}: " + ", ".join(f"{block} {value:.3g}" for block, value in norms))
    with open(out / "summary.md", "a") as f:
        f.write("\n".join(depth_lines) + "\n")
    print("\n".join(depth_lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("train", "report"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", type=Path, default=Path("runs/plstm_arrow"))
    parser.add_argument("--figure", type=Path, default=FIGURES / "plstm_arrow_gradient_flow.png",
                        help="report: where the gradient-flow figure goes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "train":
        train(args.seed, args.out, args.steps)
    else:
        report(args.out, args.figure)
    print(f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
