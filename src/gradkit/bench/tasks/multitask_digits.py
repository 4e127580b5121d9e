"""``multitask-digits``: three tasks on the digits sharing one MLP trunk.

* ``digit``: which digit (10-way cross-entropy, metric: accuracy);
* ``parity``: odd or even (2-way cross-entropy, metric: accuracy);
* ``reconstruction``: the 64 input pixels from the trunk's features (mean squared error).

The losses differ in scale and partly conflict (reconstruction wants features that keep pixel
detail, classification wants invariance), which is what gradient aggregators are meant to handle.
The runner combines the trunk's gradients with an aggregator (``--aggregator``); each head gets the
gradient of its own loss. The ranking metric is the mean of the two validation accuracies; every
task's own validation metric is reported too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._classification import load_digits, sample_rows
from .base import Task
from .registry import register_task


class MultiTaskNet(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.digit = nn.Linear(hidden, 10)
        self.parity = nn.Linear(hidden, 2)
        self.reconstruction = nn.Linear(hidden, 64)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        return {"digit": self.digit(h), "parity": self.parity(h), "reconstruction": torch.sigmoid(self.reconstruction(h))}


def _task_losses(out: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    return [
        F.cross_entropy(out["digit"], y),
        F.cross_entropy(out["parity"], y % 2),
        F.mse_loss(out["reconstruction"], x),
    ]


@register_task
class MultiTaskDigits(Task):
    name = "multitask-digits"
    summary = "digit + parity + reconstruction on a shared MLP trunk; compares gradient aggregators"
    metric = "mean accuracy"
    higher_is_better = True
    loss_names = ("digit", "parity", "reconstruction")
    defaults = {"steps": 500, "eval_every": 50, "batch_size": 64, "hidden": 64}
    #: Aggregators compared when the command line names none (those gradkit.combine provides).
    default_aggregators = ("sum", "pcgrad", "upgrad", "gradnorm", "bloop")

    def load(self, device):
        return load_digits(device, image=False)

    def build_model(self):
        return MultiTaskNet(self.options["hidden"])

    def shared_parameters(self, model):
        return list(model.trunk.parameters())

    def sample(self, data, generator):
        return sample_rows(data, self.batch_size, generator)

    def losses(self, model, batch):
        x, y = batch
        return _task_losses(model(x), x, y)

    @torch.no_grad()
    def evaluate(self, model, data, split):
        x, y = data.split(split)
        out = model(x)
        digit_loss, parity_loss, recon = (float(v) for v in _task_losses(out, x, y))
        digit_acc = float((out["digit"].argmax(-1) == y).float().mean())
        parity_acc = float((out["parity"].argmax(-1) == y % 2).float().mean())
        return {
            "loss": digit_loss + parity_loss + recon,
            "metric": (digit_acc + parity_acc) / 2,
            "digit_accuracy": digit_acc,
            "parity_accuracy": parity_acc,
            "reconstruction_mse": recon,
        }
