"""Shared pieces of the digits classification tasks."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gradkit import datasets

from .base import Task


@dataclass(frozen=True)
class Arrays:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return (self.train_x, self.train_y) if split == "train" else (self.val_x, self.val_y)


def load_digits(device: torch.device, image: bool) -> Arrays:
    train, val = datasets.digits("train", image=image), datasets.digits("val", image=image)
    return Arrays(train.inputs.to(device), train.targets.to(device), val.inputs.to(device), val.targets.to(device))


def sample_rows(arrays: Arrays, batch_size: int, generator: torch.Generator):
    # Indices are drawn on the CPU so the data order is the same on every device.
    idx = torch.randint(0, arrays.train_y.numel(), (batch_size,), generator=generator).to(arrays.train_x.device)
    return arrays.train_x[idx], arrays.train_y[idx]


@torch.no_grad()
def evaluate_classifier(model: nn.Module, arrays: Arrays, split: str) -> dict[str, float]:
    x, y = arrays.split(split)
    logits = model(x)
    return {
        "loss": float(F.cross_entropy(logits, y)),
        "metric": float((logits.argmax(-1) == y).float().mean()),
    }


class DigitsClassification(Task):
    """A digits classifier trained with cross-entropy; subclasses set ``image`` and ``build_model``."""

    metric = "accuracy"
    higher_is_better = True
    image = False

    def load(self, device):
        return load_digits(device, image=self.image)

    def sample(self, data, generator):
        return sample_rows(data, self.batch_size, generator)

    def losses(self, model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y)

    def evaluate(self, model, data, split):
        # Batch norm uses its running statistics here (the runner puts the model in eval mode).
        return evaluate_classifier(model, data, split)
