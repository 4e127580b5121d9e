"""``gradkit explain``: train (or load) a small model, explain one input with several methods,
save the picture and a table of deletion/insertion AUC per method.

Torch and the methods are imported when the command runs, so ``gradkit --help`` stays light.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["register", "train_digits_cnn", "explain_digits"]

TASKS = ("digits-cnn",)
METHOD_NAMES = ("eg", "fullgrad", "ig", "igos", "inputxgrad", "moreaugrad", "moreaugrad_group", "moreaugrad_sparse", "normgrad",
                "saliency", "smoothgrad")
MODEL_FILE = "digits_cnn.pt"  # the trained model, cached in the output directory
MODEL_INFO = "digits_cnn.json"  # how it was trained: reused only when the settings match


def train_digits_cnn(epochs: int = 6, seed: int = 0, lr: float = 1e-2, batch_size: int = 64, progress: bool = False):
    """``DigitsCNN`` trained on the digits training split with Adam; returned in eval mode.

    ``progress``: a progress bar over the training steps on stderr.
    """
    import torch

    from gradkit.datasets import digits
    from gradkit.models import DigitsCNN

    from .diffroar import fit_classifier

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN()
    data = digits("train", image=True)
    per_epoch = -(-len(data) // batch_size)
    bar = _bar(epochs * per_epoch, "training DigitsCNN", progress)
    try:
        return fit_classifier(model, data.inputs, data.targets, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                              on_batch=None if bar is None else lambda: bar.update(1))
    finally:
        if bar is not None:
            bar.close()


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def _method_options(name: str, references, seed: int) -> dict:
    import torch

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


def explain_digits(model, inputs, targets, methods, references, seed: int = 0) -> dict:
    from .methods import get_method

    return {name: get_method(name)(model, inputs, targets, **_method_options(name, references, seed)) for name in methods}


def _parse_methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise ValueError(f"--methods must name at least one of: {', '.join(METHOD_NAMES)}")
    for name in names:
        if name not in METHOD_NAMES:
            raise ValueError(f"--methods: unknown attribution method {name!r}; allowed: {', '.join(METHOD_NAMES)}")
    return names


def _load_checkpoint(path: str):
    """A DigitsCNN from a state dict saved with ``torch.save``; one clear ValueError for anything else."""
    import pickle

    import torch

    from gradkit.models import DigitsCNN

    if not Path(path).is_file():
        raise FileNotFoundError(f"--checkpoint {path} does not exist (give a DigitsCNN state dict saved with "
                                f"torch.save, e.g. {MODEL_FILE} from an earlier gradkit explain)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"--checkpoint {path}: not a file written by torch.save, or it holds more than tensors "
                         f"(only a DigitsCNN state dict is loaded, with weights_only=True)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        raise ValueError(f"--checkpoint {path}: not a state dict saved with torch.save ({reason})") from None
    model = DigitsCNN()
    if not isinstance(state, dict):
        raise ValueError(f"--checkpoint {path}: expected a DigitsCNN state dict, got {type(state).__name__}")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        reason = " ".join(str(err).split())
        reason = (reason[:200] + "...") if len(reason) > 200 else reason
        raise ValueError(f"--checkpoint {path}: not a DigitsCNN state dict ({reason or type(err).__name__})") from None
    return model.eval()


def _cached_model(out: Path, settings: dict):
    """The model an earlier call trained with the same settings into ``out``, or None."""
    model_path, info_path = out / MODEL_FILE, out / MODEL_INFO
    try:
        if json.loads(info_path.read_text()) != settings:
            return None
        return _load_checkpoint(str(model_path))
    except (OSError, ValueError):  # no cache, another format, a damaged file: train again
        return None


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "evaluate", None) == "diffroar":
        from .diffroar import run_from_args

        return run_from_args(args)
    from gradkit.bench.rundir import check_writable_dir

    # Everything that can be checked is checked before any training.
    methods = _parse_methods(args.methods)
    if args.eval_images < 0:
        raise ValueError(f"--eval-images must be >= 0, got {args.eval_images}")
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    model = _load_checkpoint(args.checkpoint) if args.checkpoint else None
    out = check_writable_dir(args.out, "--out")

    import torch

    from gradkit.datasets import digits

    from .deletion import deletion_curve, insertion_curve
    from .plot import plot_attributions

    progress = sys.stderr.isatty()
    torch.manual_seed(args.seed)
    val = digits("val", image=True)
    if not 0 <= args.index < len(val):
        raise ValueError(f"--index must be in [0, {len(val)}), got {args.index}")
    start = time.perf_counter()
    if model is not None:
        print(f"loaded {args.checkpoint}")
    else:
        settings = {"model": "DigitsCNN", "epochs": args.epochs, "seed": args.seed}
        model = None if args.retrain else _cached_model(out, settings)
        if model is not None:
            print(f"reusing {out / MODEL_FILE} (trained earlier with --epochs {args.epochs} --seed {args.seed}; "
                  f"--retrain trains again, --checkpoint PATH loads another model)")
        else:
            model = train_digits_cnn(epochs=args.epochs, seed=args.seed, progress=progress)
            torch.save(model.state_dict(), out / MODEL_FILE)
            (out / MODEL_INFO).write_text(json.dumps(settings) + "\n")
            print(f"trained DigitsCNN in {time.perf_counter() - start:.1f}s; saved {out / MODEL_FILE}, which the next "
                  f"gradkit explain --out {args.out} reuses (or pass --checkpoint {out / MODEL_FILE})")
    with torch.no_grad():
        accuracy = (model(val.inputs).argmax(1) == val.targets).float().mean().item()
    print(f"validation accuracy {accuracy:.3f}")
    references = digits("train", image=True).inputs[:256]

    x, y = val.inputs[args.index : args.index + 1], val.targets[args.index : args.index + 1]
    with torch.no_grad():
        predicted = int(model(x).argmax(1))
    bar = _bar(len(methods) * (2 if args.eval_images else 1), "attributions", progress)
    attributions = {}
    for name in methods:
        attributions.update(explain_digits(model, x, y, [name], references, args.seed))
        if bar is not None:
            bar.update(1)
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
            if bar is not None:
                bar.update(1)
        rows.append(row)
    if bar is not None:
        bar.close()
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
    from .methods import get_method
    from .randomization import model_randomization

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
    p = sub.add_parser("explain", help="explain a model's prediction with attribution methods; write a picture and AUC table",
                       description="Train a small CNN on the digits (or load one), explain one validation image with "
                                   "several attribution methods, and write OUT/explain_digits_INDEX.png and a table of "
                                   "deletion/insertion AUC (OUT/auc.md, auc.csv). The trained model is cached as "
                                   f"OUT/{MODEL_FILE} and reused by the next call with the same --out, --epochs and --seed.")
    p.add_argument("--task", choices=TASKS, default="digits-cnn", help="model and data (default: digits-cnn)")
    p.add_argument("--index", type=int, default=7, help="validation image to explain (default: 7)")
    p.add_argument("--methods", default="ig,smoothgrad,fullgrad,igos",
                   help=f"comma-separated, from: {', '.join(METHOD_NAMES)} (default: ig,smoothgrad,fullgrad,igos)")
    p.add_argument("--checkpoint", default=None,
                   help="load this DigitsCNN state dict (saved with torch.save) instead of training "
                        "(default: reuse OUT/digits_cnn.pt when its settings match, else train)")
    p.add_argument("--retrain", action="store_true", help="train again even if OUT holds a model trained with the same settings")
    p.add_argument("--out", default="runs/explain", help="output directory, created if missing (default: runs/explain)")
    p.add_argument("--epochs", type=int, default=6, help="training epochs when no checkpoint is given (default: 6)")
    p.add_argument("--eval-images", type=int, default=64,
                   help="also report mean AUC over this many validation images, 0 turns it off (default: 64)")
    p.add_argument("--randomization", action="store_true",
                   help="also run the cascading model-randomisation sanity check (default: off)")
    p.add_argument("--seed", type=int, default=0, help="seed of training and of the random methods (default: 0)")
    p.add_argument("--evaluate", choices=("diffroar",), default=None,
                   help="instead of one picture: DiffROAR of each method and of the input and random baselines "
                        "(retrain on inputs masked by each method's top/bottom features; 6 trainings per method, "
                        "seconds to minutes per method on 2 CPU cores) (default: off)")
    p.set_defaults(func=_run)
