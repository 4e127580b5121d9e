"""``digits-cnn``: a batch-normalised CNN on the 8x8 digits.

Its convolution weights feed batch norm, so they are scale-invariant: the setting in which
AdamP / SGDP and the radial projection family differ from plain Adam / SGD.
"""
from __future__ import annotations

import torch.nn.functional as F

from gradkit.models import DigitsCNN as DigitsCNNModel

from ._classification import evaluate_classifier, load_digits, sample_rows
from .base import Task
from .registry import register_task


@register_task
class DigitsCNN(Task):
    name = "digits-cnn"
    summary = "conv-BN-ReLU x2 CNN on the 8x8 digits (scale-invariant conv weights), validation accuracy"
    metric = "accuracy"
    higher_is_better = True
    defaults = {"steps": 400, "eval_every": 50, "batch_size": 64, "channels": 16}

    def load(self, device):
        return load_digits(device, image=True)

    def build_model(self):
        return DigitsCNNModel(channels=self.options["channels"])

    def sample(self, data, generator):
        return sample_rows(data, self.batch_size, generator)

    def losses(self, model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y)

    def evaluate(self, model, data, split):
        # Batch norm uses its running statistics here (the runner puts the model in eval mode).
        return evaluate_classifier(model, data, split)
