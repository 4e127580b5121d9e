"""DiffROAR: does an attribution method highlight the features that discriminate the classes?

Harshay Shah, Prateek Jain, Praneeth Netrapalli. "Do Input Gradients Highlight Discriminative
Features?", NeurIPS 2021, arXiv:2102.12781. Official code: https://github.com/harshays/inputgradients.

For a fraction ``k`` of the features, every train and test image is masked twice by its own attribution
(computed with the original model for the image's label): keeping only its top-``k`` features, and
keeping only its bottom-``k``. A fresh model is trained on each masked training set and tested on the
equally masked test set::

    DiffROAR(k) = accuracy(keep top-k) - accuracy(keep bottom-k)

Positive: the method ranks discriminative features first; about 0: no better than a random ranking
(``"random"`` is offered as that baseline); negative: it ranks them last. ``"input"`` ranks pixels by
their own intensity, with no model at all: a method that does no better than it is not telling more
than where the ink is. Features are ranked by
``|attribution|`` summed over channels, ties in pixel order (as the deletion curves), and masked
features are set to ``fill`` (0, the digits' background).

Cost: attributions for every train and test image (one call of the method per ``batch_size`` images),
then ``2 * len(fractions) * repeats`` trainings from scratch; on digits with the default small MLP that
is seconds per training, with the digits CNN about ten.

Departures: the paper retrains the architecture it explains, on CIFAR/ImageNet-scale data, with
several seeds; here the retrained model is a choice (``retrain="mlp"`` by default, ``"cnn"`` for the
digits CNN), and ``repeats`` seeds are averaged.
"""
from __future__ import annotations

import argparse
import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_choice, check_positive_int
from .methods import get_method

__all__ = ["DiffRoarResult", "diffroar", "keep_mask", "fit_classifier", "attribute_all", "plot_diffroar", "results_table", "run_from_args"]

RETRAIN = ("mlp", "cnn")


@dataclass(frozen=True)
class DiffRoarResult:
    """Per fraction: test accuracy keeping the top and the bottom features (mean over repeats), their
    difference, and the seconds spent attributing and retraining."""

    method: str
    fractions: tuple[float, ...]
    top: tuple[float, ...]
    bottom: tuple[float, ...]
    attribution_seconds: float
    training_seconds: float
    trainings: int
    diff: tuple[float, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "diff", tuple(t - b for t, b in zip(self.top, self.bottom)))


def keep_mask(attributions: torch.Tensor, fraction: float, top: bool) -> torch.Tensor:
    """A 0/1 mask of the inputs' shape keeping the top (or bottom) ``fraction`` of each input's pixels."""
    n = attributions.shape[0]
    image = attributions.dim() >= 3
    importance = (attributions.abs().sum(1) if image else attributions.abs()).reshape(n, -1).to(torch.float64)
    pixels = importance.shape[1]
    count = int(round(fraction * pixels))
    order = torch.argsort(importance, dim=1, descending=top, stable=True)
    keep = torch.zeros_like(importance, dtype=torch.bool)
    keep.scatter_(1, order[:, :count], True)
    shape = (n, 1) + tuple(attributions.shape[2:]) if image else tuple(attributions.shape)
    return keep.view(shape).expand_as(attributions).to(attributions.dtype)


def fit_classifier(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, epochs: int = 30, lr: float = 1e-2,
                   batch_size: int = 64, seed: int = 0, optimizer=None, on_batch=None) -> nn.Module:
    """Cross-entropy training for ``epochs`` with a seeded batch order; returned in eval mode.

    ``optimizer``: builds the optimizer from the parameters (default Adam at ``lr``); ``on_batch``: called
    after every step (progress bars).
    """
    gen = torch.Generator().manual_seed(seed)
    opt = optimizer(model.parameters()) if optimizer is not None else torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(targets), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(inputs[idx]), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if on_batch is not None:
                on_batch()
    return model.eval()


def _retrain(kind: str, inputs, targets, seed: int, epochs: int | None) -> nn.Module:
    from gradkit.models import DigitsCNN, digits_mlp

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "mlp":
            model = nn.Sequential(nn.Flatten(), digits_mlp(hidden=64, depth=1, num_classes=int(targets.max()) + 1))
        else:
            model = DigitsCNN(num_classes=int(targets.max()) + 1)
    return fit_classifier(model, inputs, targets, epochs=epochs or (20 if kind == "mlp" else 6), seed=seed)


def attribute_all(model, method: str | Callable, inputs: torch.Tensor, targets: torch.Tensor, *, seed: int = 0,
                  batch_size: int = 128, references: torch.Tensor | None = None, **options) -> torch.Tensor:
    """Attributions of every input for its label, ``batch_size`` at a time; ``"random"`` draws uniform
    scores and ``"input"`` returns the inputs themselves (the two model-free baselines).

    A method taking ``generator=`` gets one seeded with ``seed``; one taking ``references=`` gets ``references``.
    """
    check_positive_int("batch_size", batch_size)
    if method == "random":
        return torch.rand(inputs.shape, generator=torch.Generator().manual_seed(seed), dtype=inputs.dtype)
    if method == "input":
        return inputs.detach().clone()
    fn = get_method(method) if isinstance(method, str) else method
    parameters = inspect.signature(fn).parameters
    opts = dict(options)
    if "generator" in parameters and "generator" not in opts:
        opts["generator"] = torch.Generator().manual_seed(seed)
    if "references" in parameters and "references" not in opts:
        if references is None:
            raise ValueError(f"method {method!r} needs references= (data to draw baselines from)")
        opts["references"] = references
    parts = [fn(model, inputs[s:s + batch_size], targets[s:s + batch_size], **opts).detach() for s in range(0, len(inputs), batch_size)]
    return torch.cat(parts)


def diffroar(
    model: nn.Module,
    method: str | Callable,
    train,
    test,
    *,
    fractions: Sequence[float] = (0.1, 0.2, 0.4),
    retrain: str = "mlp",
    epochs: int | None = None,
    repeats: int = 1,
    fill: float = 0.0,
    seed: int = 0,
    references: torch.Tensor | None = None,
    method_options: dict | None = None,
) -> DiffRoarResult:
    """DiffROAR of one attribution method (a registered name, a callable, ``"random"`` or ``"input"``).

    Args:
        model: the trained model whose attributions are evaluated (eval mode).
        train, test: splits with ``.inputs`` and ``.targets`` (``gradkit.datasets.digits(..., image=True)``).
        fractions: the fractions ``k`` of pixels kept, each in (0, 1).
        retrain: the model trained on masked data: ``"mlp"`` (one hidden layer) or ``"cnn"`` (DigitsCNN).
        epochs: training epochs of each retraining (default 20 for the MLP, 6 for the CNN).
        repeats: seeds averaged per fraction and side.
    """
    check_choice("retrain", retrain, RETRAIN)
    check_positive_int("repeats", repeats)
    fractions = tuple(float(k) for k in fractions)
    if not fractions or any(not 0.0 < k < 1.0 for k in fractions):
        raise ValueError(f"fractions must be numbers in (0, 1), got {fractions!r}")
    name = method if isinstance(method, str) else getattr(method, "__name__", "method")
    start = time.perf_counter()
    attr_train = attribute_all(model, method, train.inputs, train.targets, seed=seed, references=references, **(method_options or {}))
    attr_test = attribute_all(model, method, test.inputs, test.targets, seed=seed + 1, references=references, **(method_options or {}))
    attributed = time.perf_counter()
    top, bottom = [], []
    for k in fractions:
        for keep_top, out in ((True, top), (False, bottom)):
            m_train, m_test = keep_mask(attr_train, k, keep_top), keep_mask(attr_test, k, keep_top)
            x_train = train.inputs * m_train + fill * (1 - m_train)
            x_test = test.inputs * m_test + fill * (1 - m_test)
            accuracies = []
            for r in range(repeats):
                fitted = _retrain(retrain, x_train, train.targets, seed + r, epochs)
                with torch.no_grad():
                    accuracies.append((fitted(x_test).argmax(1) == test.targets).float().mean().item())
            out.append(sum(accuracies) / repeats)
    return DiffRoarResult(name, fractions, tuple(top), tuple(bottom), attributed - start,
                          time.perf_counter() - attributed, 2 * len(fractions) * repeats)


def results_table(results: Sequence[DiffRoarResult]) -> str:
    """A markdown table: DiffROAR per fraction, its mean, and the cost of each row."""
    fractions = results[0].fractions
    header = ["method"] + [f"DiffROAR k={k:g} (top / bottom acc)" for k in fractions] + ["mean DiffROAR", "cost"]
    rows = []
    for r in sorted(results, key=lambda r: -sum(r.diff) / len(r.diff)):
        cells = [f"{d:+.3f} ({t:.3f} / {b:.3f})" for d, t, b in zip(r.diff, r.top, r.bottom)]
        cost = f"{r.attribution_seconds:.1f}s attributing + {r.training_seconds:.1f}s for {r.trainings} trainings"
        rows.append([r.method] + cells + [f"{sum(r.diff) / len(r.diff):+.3f}", cost])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_diffroar(results: Sequence[DiffRoarResult], path) -> None:
    """DiffROAR against the fraction of pixels kept, one line per method, the random baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in sorted(results, key=lambda r: -sum(r.diff)):
        style = {"random": dict(color="black", linestyle="--"), "input": dict(color="grey", linestyle=":")}.get(r.method, dict(marker="o"))
        ax.plot(r.fractions, r.diff, label=r.method, **style)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("fraction of pixels kept (k)")
    ax.set_ylabel("DiffROAR = acc(top-k) - acc(bottom-k)")
    ax.set_title("DiffROAR on digits (higher: discriminative features first)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_from_args(args: argparse.Namespace) -> int:
    """``gradkit explain --evaluate diffroar``: DiffROAR of every ``--methods`` entry and of the two
    baselines (``input``, ``random``) for the digits CNN; writes ``diffroar.md`` and ``diffroar.csv`` under ``--out``."""
    from gradkit.datasets import digits
    from gradkit.models import DigitsCNN

    baselines = ("input", "random")
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    for name in names:
        if name not in baselines:
            get_method(name)
    names += [b for b in baselines if b not in names]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = digits("train", image=True), digits("val", image=True)
    if args.checkpoint:
        if not Path(args.checkpoint).is_file():
            raise FileNotFoundError(f"--checkpoint {args.checkpoint} does not exist")
        model = DigitsCNN()
        model.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True))
        model.eval()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            model = DigitsCNN()
        model = fit_classifier(model, train.inputs, train.targets, epochs=args.epochs, seed=args.seed)
    with torch.no_grad():
        accuracy = (model(test.inputs).argmax(1) == test.targets).float().mean().item()
    print(f"explained model: DigitsCNN, validation accuracy {accuracy:.3f}")
    print(f"cost: attributions of {len(train) + len(test)} images per method, then 6 trainings of a one-hidden-layer MLP "
          f"(20 epochs each) per method, for {len(names)} methods")
    results = []
    for name in names:
        result = diffroar(model, name, train, test, seed=args.seed, references=train.inputs[:256])
        print(f"{name}: DiffROAR {', '.join(f'{d:+.3f}' for d in result.diff)} "
              f"({result.attribution_seconds:.1f}s attributing, {result.training_seconds:.1f}s training)", flush=True)
        results.append(result)
    table = results_table(results)
    (out / "diffroar.md").write_text(table)
    rows = [["method", "fraction", "top", "bottom", "diffroar"]] + [[r.method, f"{k:g}", f"{t:.4f}", f"{b:.4f}", f"{d:.4f}"]
                                                                   for r in results for k, t, b, d in zip(r.fractions, r.top, r.bottom, r.diff)]
    (out / "diffroar.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    plot_diffroar(results, out / "diffroar.png")
    print(table, end="")
    print(f"wrote {out / 'diffroar.md'}, {out / 'diffroar.csv'} and {out / 'diffroar.png'} (higher is better; about 0 is no better than random)")
    return 0
