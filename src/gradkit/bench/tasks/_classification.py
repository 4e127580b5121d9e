"""Shared pieces of the digits classification tasks."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gradkit import datasets


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
