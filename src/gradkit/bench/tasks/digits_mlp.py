"""``digits-mlp``: a ReLU MLP on scikit-learn's 8x8 handwritten digits (10 classes)."""
from __future__ import annotations

from gradkit.models import digits_mlp

from ._classification import DigitsClassification
from .registry import register_task


@register_task
class DigitsMLP(DigitsClassification):
    name = "digits-mlp"
    summary = "ReLU MLP (64-64-64-10) on the 8x8 digits, cross-entropy, validation accuracy"
    defaults = {"steps": 500, "eval_every": 50, "batch_size": 64, "hidden": 64, "depth": 2}

    def build_model(self):
        return digits_mlp(hidden=self.options["hidden"], depth=self.options["depth"])
