"""Saliency: the gradient of the target score with respect to the input.

Karen Simonyan, Andrea Vedaldi, Andrew Zisserman. "Deep Inside Convolutional Networks: Visualising
Image Classification Models and Saliency Maps". ICLR 2014 workshop, arXiv:1312.6034.
No official code was released; Captum's ``Saliency`` is the reference implementation users know
(https://github.com/pytorch/captum), and with ``abs=True`` (the default of both) the numbers match.
"""
from __future__ import annotations

import torch

from gradkit.registry import register_attribution

from ._common import Model, Target, check_inputs, input_gradient, resolve_target

__all__ = ["saliency"]


@register_attribution("saliency", summary="|gradient of the target score| with respect to the input",
                      reference="Simonyan et al., Deep Inside Convolutional Networks, ICLR 2014 workshop, arXiv:1312.6034")
def saliency(model: Model, inputs: torch.Tensor, target: Target = None, *, abs: bool = True, create_graph: bool = False) -> torch.Tensor:
    """``|d f_target(x) / dx|`` (or the signed gradient with ``abs=False``), shape of ``inputs``.

    The paper takes the maximum magnitude over colour channels for its pictures; here the
    per-channel magnitude is returned, so callers (the plots, the metrics) reduce channels.
    """
    x = check_inputs(inputs)
    t = resolve_target(model, x, target)
    grad = input_gradient(model, x, t, create_graph=create_graph)
    return grad.abs() if abs else grad
