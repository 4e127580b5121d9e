"""The model of the frontier optimizers' parity runs: a small CNN without kinks.

Conv -> tanh -> strided conv -> tanh -> linear on 8x8 digit images. Without ReLU or max-pool a
last-bit difference between two implementations of one algorithm cannot flip a branch, so the
parameter gap after 50 steps measures the algorithms, not the chaos of the training.
"""
from __future__ import annotations

import torch

from support import parity


def smooth_cnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.Tanh(),
        torch.nn.Conv2d(6, 8, 3, stride=2, padding=1), torch.nn.Tanh(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10),
    )


def cnn_parity(make_ours, make_reference, steps: int = 50) -> float:
    """Largest relative parameter difference after ``steps`` steps of the smooth CNN on digits."""
    return parity(make_ours, make_reference, model_fn=smooth_cnn, steps=steps, image=True)
