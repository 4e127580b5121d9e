"""``multitask-digits``: several tasks on the digits sharing one MLP trunk.

The heads to train are the ``tasks`` option, two or more of:

* ``digit``: which digit (10-way cross-entropy; metric: accuracy);
* ``parity``: odd or even (2-way cross-entropy; metric: accuracy);
* ``reconstruction``: the 64 input pixels from the trunk's features (mean squared error).

The default, ``digit/reconstruction``, is a main task with an auxiliary one, whose gradients
partly conflict (reconstruction wants features that keep pixel detail, classification wants
invariance) and differ in scale: the setting of PCGrad, UPGrad, GradNorm and Bloop, and the one
that two-objective aggregators such as Bloop accept. ``tasks=digit/parity/reconstruction`` makes
it three. The runner combines the trunk's gradients with an aggregator (``--aggregator``); each
head gets the gradient of its own loss. The first task is the main one for aggregators that
distinguish (Bloop projects the second's gradient against the first's). The ranking metric is the mean validation accuracy of the
classification heads; every task's own validation metric is reported too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._classification import load_digits, sample_rows
from .base import Task
from .registry import register_task

HEADS = {"digit": 10, "parity": 2, "reconstruction": 64}
CLASSIFIERS = ("digit", "parity")


class MultiTaskNet(nn.Module):
    def __init__(self, hidden: int, tasks: tuple[str, ...]):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.ModuleDict({t: nn.Linear(hidden, HEADS[t]) for t in tasks})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        out = {name: head(h) for name, head in self.heads.items()}
        if "reconstruction" in out:
            out["reconstruction"] = torch.sigmoid(out["reconstruction"])
        return out


def _loss(name: str, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "digit":
        return F.cross_entropy(out, y)
    if name == "parity":
        return F.cross_entropy(out, y % 2)
    return F.mse_loss(out, x)


@register_task
class MultiTaskDigits(Task):
    name = "multitask-digits"
    summary = "tasks on the digits (digit, parity, reconstruction) sharing an MLP trunk; compares gradient aggregators"
    metric = "accuracy"
    higher_is_better = True
    defaults = {"steps": 500, "eval_every": 50, "batch_size": 64, "hidden": 64, "tasks": ("digit", "reconstruction")}
    #: Aggregators compared when the command line names none (those gradkit.combine provides).
    default_aggregators = ("sum", "pcgrad", "upgrad", "gradnorm", "bloop")

    def __init__(self, **options):
        if isinstance(options.get("tasks"), str):  # a single word parses as a string
            options["tasks"] = (options["tasks"],)
        super().__init__(**options)
        tasks = self.options["tasks"]
        unknown = [t for t in tasks if t not in HEADS]
        if unknown or len(set(tasks)) != len(tasks) or len(tasks) < 2:
            raise ValueError(f"task 'multitask-digits': tasks must be two or more distinct of {'/'.join(HEADS)}, got {'/'.join(map(str, tasks))}")
        if not any(t in CLASSIFIERS for t in tasks):
            raise ValueError("task 'multitask-digits': tasks must include digit or parity (the ranking metric is their accuracy)")
        self.loss_names = tuple(tasks)

    def load(self, device):
        return load_digits(device, image=False)

    def build_model(self):
        return MultiTaskNet(self.options["hidden"], self.loss_names)

    def shared_parameters(self, model):
        return list(model.trunk.parameters())

    def sample(self, data, generator):
        return sample_rows(data, self.batch_size, generator)

    def losses(self, model, batch):
        x, y = batch
        out = model(x)
        return [_loss(name, out[name], x, y) for name in self.loss_names]

    @torch.no_grad()
    def evaluate(self, model, data, split):
        x, y = data.split(split)
        out = model(x)
        losses = {name: float(_loss(name, out[name], x, y)) for name in self.loss_names}
        # Each task's own metric: accuracy for the classifiers, mean squared error for reconstruction.
        result: dict[str, float] = {}
        for name in self.loss_names:
            if name in CLASSIFIERS:
                target = y if name == "digit" else y % 2
                result[f"{name}_accuracy"] = float((out[name].argmax(-1) == target).float().mean())
            else:
                result["reconstruction_mse"] = losses[name]
        accuracies = [result[f"{n}_accuracy"] for n in self.loss_names if n in CLASSIFIERS]
        return {"loss": sum(losses.values()), "metric": sum(accuracies) / len(accuracies), **result}
