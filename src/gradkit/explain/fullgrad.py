"""FullGrad: input-gradients plus the bias-gradients of every layer.

Suraj Srinivas, Francois Fleuret. "Full-Gradient Representation for Neural Network Visualization".
NeurIPS 2019, arXiv:1905.00780. Official code: https://github.com/idiap/fullgrad-saliency.

For a piecewise-linear network ``f(x) = grad_x f(x) . x + sum_l sum_c (grad_{z_l} f(x) * b_l)_c``
(completeness), where ``z_l`` is the output of a layer with bias ``b_l``. Batch norm in eval mode is
the affine map ``gamma (z - mu) / sqrt(var + eps) + beta``, whose implicit bias is
``beta - gamma mu / sqrt(var + eps)``. The saliency map, as in the paper and the official code:

    S(x) = sum_channels psi(grad_x f(x) * x) + sum_{conv layers l} sum_channels up(psi(grad_{z_l} f(x) * b_l))

with ``psi`` = absolute value then per-sample min-max rescaling to [0, 1] (over channels and
space, ``eps = 1e-6``), and ``up`` bilinear upsampling (``align_corners=True``) to the input's size.
Like the official code, only bias-gradients with the input's number of dimensions (convolutions,
2-D batch norm) enter the map; fully connected layers count towards completeness only.
The map has one channel; it is returned expanded to the input's shape.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gradkit.registry import register_attribution

from ._common import Target, check_inputs, resolve_target, select

__all__ = ["fullgrad", "fullgrad_decomposition"]

_BIASED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# Their implicit bias depends on the input, so the decomposition would be silently incomplete.
_UNSUPPORTED = (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def _layer_bias(module: nn.Module) -> torch.Tensor | None:
    if isinstance(module, _BATCH_NORMS):
        if module.training or not module.track_running_stats:
            raise ValueError(f"fullgrad needs batch norm in eval mode with running statistics (call model.eval()); {module} is not")
        scale = torch.rsqrt(module.running_var + module.eps)
        bias = -module.running_mean * scale
        if module.affine:
            bias = bias * module.weight + module.bias
        return bias.detach()
    if isinstance(module, _BIASED) and module.bias is not None:
        return module.bias.detach()
    return None


def fullgrad_decomposition(model: nn.Module, inputs: torch.Tensor, target: Target = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The input-gradient and the bias-gradients ``grad_{z_l} f * b_l`` (one per biased layer, in forward order)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (FullGrad reads its layers' biases), got {type(model).__name__}")
    for m in model.modules():
        if isinstance(m, _UNSUPPORTED):
            raise TypeError(f"fullgrad supports Linear, Conv and BatchNorm layers; {type(m).__name__} has an input-dependent implicit bias")
    x = check_inputs(inputs)
    t = resolve_target(model, x, target)
    outputs: list[torch.Tensor] = []
    biases: list[torch.Tensor] = []

    def hook(module, args, out):
        bias = _layer_bias(module)
        if bias is not None:
            outputs.append(out)
            biases.append(bias)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _BIASED + _BATCH_NORMS)]
    try:
        with torch.enable_grad():
            x = x.requires_grad_(True)
            scores = select(model(x), t)
            grads = torch.autograd.grad(scores.sum(), [x] + outputs)
    finally:
        for h in handles:
            h.remove()
    bias_grads = [g * b.view((1, -1) + (1,) * (g.dim() - 2)) for g, b in zip(grads[1:], biases)]
    return grads[0], bias_grads


def _rescale(t: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    t = t.abs()
    flat = t.flatten(1)
    shape = (-1,) + (1,) * (t.dim() - 1)
    t = t - flat.amin(1).view(shape)
    return t / (t.flatten(1).amax(1).view(shape) + eps)


@register_attribution("fullgrad", summary="input-gradients plus the bias-gradients of every layer",
                      reference="Srinivas & Fleuret, Full-Gradient Representation for Neural Network Visualization, NeurIPS 2019, arXiv:1905.00780; https://github.com/idiap/fullgrad-saliency")
def fullgrad(model: nn.Module, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
    """The FullGrad saliency map, expanded to the shape of ``inputs`` (image inputs ``(N, C, ...)``)."""
    x = check_inputs(inputs)
    if x.dim() < 3:
        raise ValueError(f"fullgrad is for conv nets: inputs must be (N, C, *spatial), got shape {tuple(x.shape)}")
    input_grad, bias_grads = fullgrad_decomposition(model, x, target)
    cam = _rescale(input_grad * x).sum(1, keepdim=True)
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[x.dim() - 2]
    for g in bias_grads:
        if g.dim() == x.dim():
            up = F.interpolate(_rescale(g), size=x.shape[2:], mode=mode, align_corners=True)
            cam = cam + up.sum(1, keepdim=True)
    return cam.detach().expand_as(x).contiguous()
