"""``digits-mlp``: a ReLU MLP on scikit-learn's 8x8 handwritten digits (10 classes)."""
from __future__ import annotations

import torch.nn.functional as F

from gradkit.models import digits_mlp

from ._classification import evaluate_classifier, load_digits, sample_rows
from .base import Task
from .registry import register_task


@register_task
class DigitsMLP(Task):
    name = "digits-mlp"
    summary = "ReLU MLP (64-64-64-10) on the 8x8 digits, cross-entropy, validation accuracy"
    metric = "accuracy"
    higher_is_better = True
    defaults = {"steps": 500, "eval_every": 50, "batch_size": 64, "hidden": 64, "depth": 2}

    def load(self, device):
        return load_digits(device, image=False)

    def build_model(self):
        return digits_mlp(hidden=self.options["hidden"], depth=self.options["depth"])

    def sample(self, data, generator):
        return sample_rows(data, self.batch_size, generator)

    def losses(self, model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y)

    def evaluate(self, model, data, split):
        return evaluate_classifier(model, data, split)
