"""``stdlib-lm``: a byte-level LLaMA-style language model on the Python standard library's source.

Training and validation text come from different files (see :func:`gradkit.datasets.stdlib_text`).
The metric is validation bits per byte (cross-entropy in nats / ln 2), lower is better.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gradkit import datasets
from gradkit.models import TinyLM

from .base import Task
from .registry import register_task


@dataclass(frozen=True)
class _Text:
    train: torch.Tensor  # kept on the CPU: windows are cut there, then moved
    device: torch.device
    # Fixed evaluation windows, the same for every optimizer: (inputs, targets) per split.
    eval_windows: dict[str, tuple[torch.Tensor, torch.Tensor]]


@register_task
class StdlibLM(Task):
    name = "stdlib-lm"
    summary = "byte-level TinyLM (RMSNorm, RoPE, SwiGLU) on stdlib source, validation bits per byte"
    metric = "bits/byte"
    higher_is_better = False
    defaults = {
        "steps": 300, "eval_every": 50, "batch_size": 16,
        "dim": 64, "depth": 2, "heads": 4, "context": 64,
        "train_bytes": 1_000_000, "val_bytes": 200_000, "eval_windows": 128,
    }

    def load(self, device):
        o = self.options
        train = datasets.stdlib_text("train", max_bytes=o["train_bytes"])
        val = datasets.stdlib_text("val", max_bytes=o["val_bytes"])
        windows = {}
        for i, (split, text) in enumerate((("train", train), ("val", val))):
            g = torch.Generator().manual_seed(1000 + i)
            x, y = TinyLM.batch(text, o["eval_windows"], o["context"], generator=g)
            windows[split] = (x.to(device), y.to(device))
        return _Text(train, torch.device(device), windows)

    def build_model(self):
        o = self.options
        return TinyLM(dim=o["dim"], depth=o["depth"], heads=o["heads"], context=o["context"])

    def sample(self, data, generator):
        x, y = TinyLM.batch(data.train, self.batch_size, self.options["context"], generator=generator)
        return x.to(data.device), y.to(data.device)

    def losses(self, model, batch):
        x, y = batch
        return F.cross_entropy(model(x).flatten(0, 1), y.flatten())

    @torch.no_grad()
    def evaluate(self, model, data, split):
        x, y = data.eval_windows[split]
        total = 0.0
        for i in range(0, len(x), 32):
            logits = model(x[i : i + 32])
            total += float(F.cross_entropy(logits.flatten(0, 1), y[i : i + 32].flatten(), reduction="sum"))
        loss = total / y.numel()
        return {"loss": loss, "metric": loss / math.log(2)}
