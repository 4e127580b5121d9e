"""Gradient x Input: the input times the gradient of the target score.

Avanti Shrikumar, Peyton Greenside, Anna Shcherbina, Anshul Kundaje. "Not Just a Black Box:
Learning Important Features Through Propagating Activation Differences". arXiv:1605.01713, 2016.
Official code (DeepLIFT, which introduced the comparison): https://github.com/kundajelab/deeplift.
Matches Captum's ``InputXGradient``.
"""
from __future__ import annotations

import torch

from gradkit.registry import register_attribution

from ._common import Model, Target, check_inputs, input_gradient, resolve_target

__all__ = ["input_x_gradient"]


@register_attribution("inputxgrad", summary="input times the gradient of the target score",
                      reference="Shrikumar et al., Not Just a Black Box, arXiv:1605.01713; https://github.com/kundajelab/deeplift")
def input_x_gradient(model: Model, inputs: torch.Tensor, target: Target = None, *, create_graph: bool = False) -> torch.Tensor:
    """``x * d f_target(x) / dx``, shape of ``inputs``.

    For a model that is linear in its input this is the exact contribution of each feature
    relative to an all-zero input (Integrated Gradients with a zero baseline).
    """
    x = check_inputs(inputs)
    t = resolve_target(model, x, target)
    return input_gradient(model, x, t, create_graph=create_graph) * x
