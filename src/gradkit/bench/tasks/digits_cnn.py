"""``digits-cnn``: a batch-normalised CNN on the 8x8 digits.

Its convolution weights feed batch norm, so they are scale-invariant: the setting in which
AdamP / SGDP and the radial projection family differ from plain Adam / SGD.
"""
from __future__ import annotations

from gradkit.models import DigitsCNN as DigitsCNNModel

from ._classification import DigitsClassification
from .registry import register_task


@register_task
class DigitsCNN(DigitsClassification):
    name = "digits-cnn"
    summary = "conv-BN-ReLU x2 CNN on the 8x8 digits (scale-invariant conv weights), validation accuracy"
    defaults = {"steps": 400, "eval_every": 50, "batch_size": 64, "channels": 16}
    image = True

    def build_model(self):
        return DigitsCNNModel(channels=self.options["channels"])
