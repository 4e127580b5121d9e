"""``gradkit explain``: train (or load) a small model, explain one input with several methods,
save the picture and a table of deletion/insertion AUC per method."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .deletion import deletion_curve, insertion_curve
from .methods import METHODS, get_method
from .randomization import model_randomization

__all__ = ["register", "train_digits_cnn", "explain_digits"]

TASKS = ("digits-cnn",)


def train_digits_cnn(epochs: int = 6, seed: int = 0, lr: float = 1e-2, batch_size: int = 64):
    """``DigitsCNN`` trained on the digits training split with Adam; returned in eval mode."""
    from gradkit.datasets import digits
    from gradkit.models import DigitsCNN

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN()
    data = digits("train", image=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(data), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(model(data.inputs[idx]), data.targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def _method_options(name: str, references: torch.Tensor, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    if name == "ig":
        return {"steps": 50}
    if name == "smoothgrad":
        return {"samples": 50, "noise_level": 0.15, "generator": gen}
    if name == "eg":
        return {"references": references, "samples": 64, "generator": gen}
    if name == "igos":
        return {"mask_size": 8, "generator": gen}
    return {}


def explain_digits(model, inputs, targets, methods, references, seed: int = 0) -> dict[str, torch.Tensor]:
    return {name: get_method(name)(model, inputs, targets, **_method_options(name, references, seed)) for name in methods}


def _parse_methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise ValueError(f"--methods must name at least one of: {', '.join(METHODS)}")
    for name in names:
        get_method(name)
    return names


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "evaluate", None) == "diffroar":
        from .diffroar import run_from_args

        return run_from_args(args)
    from gradkit.datasets import digits
    from gradkit.models import DigitsCNN

    from .plot import plot_attributions

    methods = _parse_methods(args.methods)
    if args.eval_images < 0:
        raise ValueError(f"--eval-images must be >= 0, got {args.eval_images}")
    torch.manual_seed(args.seed)
    val = digits("val", image=True)
    if not 0 <= args.index < len(val):
        raise ValueError(f"--index must be in [0, {len(val)}), got {args.index}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.checkpoint:
        if not Path(args.checkpoint).is_file():
            raise FileNotFoundError(f"--checkpoint {args.checkpoint} does not exist")
        model = DigitsCNN()
        model.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True))
        model.eval()
        print(f"loaded {args.checkpoint}")
    else:
        model = train_digits_cnn(epochs=args.epochs, seed=args.seed)
        torch.save(model.state_dict(), out / "digits_cnn.pt")
        print(f"trained DigitsCNN in {time.perf_counter() - start:.1f}s (saved {out / 'digits_cnn.pt'})")
    with torch.no_grad():
        accuracy = (model(val.inputs).argmax(1) == val.targets).float().mean().item()
    print(f"validation accuracy {accuracy:.3f}")
    references = digits("train", image=True).inputs[:256]

    x, y = val.inputs[args.index : args.index + 1], val.targets[args.index : args.index + 1]
    with torch.no_grad():
        predicted = int(model(x).argmax(1))
    attributions = explain_digits(model, x, y, methods, references, args.seed)
    figure = out / f"explain_digits_{args.index}.png"
    plot_attributions(x, attributions, figure, row_titles=[f"label {int(y)}, pred {predicted}"])
    print(f"wrote {figure}")

    n_eval = min(args.eval_images, len(val))
    rows = []
    for name in methods:
        d = deletion_curve(model, x, y, attributions[name]).auc.item()
        i = insertion_curve(model, x, y, attributions[name]).auc.item()
        row = [name, f"{d:.3f}", f"{i:.3f}"]
        if n_eval:
            xe, ye = val.inputs[:n_eval], val.targets[:n_eval]
            attr = explain_digits(model, xe, ye, [name], references, args.seed)[name]
            row += [f"{deletion_curve(model, xe, ye, attr).auc.mean().item():.3f}", f"{insertion_curve(model, xe, ye, attr).auc.mean().item():.3f}"]
        rows.append(row)
    header = ["method", f"deletion AUC (#{args.index})", f"insertion AUC (#{args.index})"]
    if n_eval:
        header += [f"deletion AUC (mean of {n_eval})", f"insertion AUC (mean of {n_eval})"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    table = "\n".join(lines) + "\n"
    (out / "auc.md").write_text(table)
    (out / "auc.csv").write_text("\n".join(",".join(r) for r in [header] + rows) + "\n")
    print(table, end="")
    print(f"wrote {out / 'auc.md'} and {out / 'auc.csv'} (lower deletion / higher insertion AUC is better)")
    if args.randomization:
        xe, ye = (val.inputs[:n_eval], val.targets[:n_eval]) if n_eval else (x, y)
        table = _randomization_table(model, xe, ye, methods, references, args.seed)
        (out / "randomization.md").write_text(table)
        print(table, end="")
        print(f"wrote {out / 'randomization.md'} (Spearman of |attributions| after cascading randomisation; near 0 passes)")
    return 0


def _randomization_table(model, inputs, targets, methods, references, seed: int) -> str:
    header, rows = None, []
    for name in methods:
        # fresh options (and random generators) per call, so the original and the randomised
        # models see the same noise and references
        def method(m, x, t, name=name):
            return get_method(name)(m, x, t, **_method_options(name, references, seed))

        results = model_randomization(model, method, inputs, targets, mode="cascading", seed=seed)
        if header is None:
            header = ["method"] + ["+" + r.layers[-1] for r in results]
        rows.append([name] + [f"{r.correlation.mean().item():.2f}" for r in results])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def register(sub) -> None:
    p = sub.add_parser("explain", help="explain a model's prediction with attribution methods; write a picture and AUC table")
    p.add_argument("--task", choices=TASKS, default="digits-cnn", help="model and data (default: digits-cnn)")
    p.add_argument("--index", type=int, default=7, help="validation image to explain (default: 7)")
    p.add_argument("--methods", default="ig,smoothgrad,fullgrad,igos", help=f"comma-separated, from: {', '.join(METHODS)}")
    p.add_argument("--checkpoint", default=None, help="load this DigitsCNN state dict instead of training")
    p.add_argument("--out", default="runs/explain", help="output directory (default: runs/explain)")
    p.add_argument("--epochs", type=int, default=6, help="training epochs when no checkpoint is given (default: 6)")
    p.add_argument("--eval-images", type=int, default=64, help="also report mean AUC over this many validation images (0: off)")
    p.add_argument("--randomization", action="store_true", help="also run the cascading model-randomisation sanity check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--evaluate", choices=("diffroar",), default=None,
                   help="instead of one picture: DiffROAR of each method and of the input and random baselines (retrain on inputs masked by each method's top/bottom features; "
                        "6 trainings per method; seconds to minutes per method on 2 CPU cores)")
    p.set_defaults(func=_run)
