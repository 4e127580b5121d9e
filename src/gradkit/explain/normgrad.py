"""NormGrad: saliency from the norm of the per-location weight gradient of convolutional layers.

Sylvestre-Alvise Rebuffi, Ruth Fong, Xu Ji, Andrea Vedaldi. "There and Back Again: Revisiting
Backpropagation Saliency Methods", CVPR 2020, arXiv:2004.02866. Official code:
https://github.com/srebuffi/revisiting_saliency (also in TorchRay, ``torchray.attribution.norm_grad``).

The gradient of a convolution's weight is a sum over output locations ``p`` of outer products
``g_p x_p^T`` (``g_p`` the gradient of the target score at the layer's output, ``x_p`` the input patch).
NormGrad keeps the locations apart and takes each term's Frobenius norm, ``||g_p x_p^T|| = ||g_p|| ||x_p||``:

* ``variant="identity"`` (the paper's default): a virtual 1x1 identity convolution after the layer, so
  ``x_p`` is the layer's output at ``p``; the map has the layer's output resolution.
* ``variant="conv"``: the layer's own weight (Conv2d, ``groups=1``), ``x_p`` the unfolded input patch;
  with a bias the patch gets a constant 1 appended (the bias gradient ``g_p`` is part of the weight
  gradient), so the norm is ``||g_p|| sqrt(||x_p||^2 + 1)``.

Several layers are combined as in the official code: each map is upsampled (bilinear) to the input's
size, min-max scaled to [0, 1] per example, and the maps are multiplied (``combine="product"``, the
default); ``combine="sum"`` adds them instead. ``weights`` (default 1 each) are exponents of the
product or factors of the sum. The official code also offers a virtual 3x3 convolution on the
layer's output; ``variant="conv"`` instead reads the layer's own (any-size) kernel, which is the
paper's "gradient of the convolutional weights" for that layer.
The map has one channel; it is returned expanded to the input's shape. The paper's meta-learned variant
(one SGD step before the backward pass) is not implemented.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gradkit.registry import register_attribution

from ._common import Target, check_choice, check_inputs, resolve_target, select

__all__ = ["normgrad", "normgrad_layer_maps"]


def _layers(model: nn.Module, layers) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    if layers is None:
        chosen = {name: m for name, m in modules.items() if isinstance(m, nn.Conv2d)}
        if not chosen:
            raise ValueError("normgrad needs convolutional layers: the model has no nn.Conv2d; name the layers with layers=[...]")
        return chosen
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"layers must be None or a non-empty list of module names, got {layers!r}")
    unknown = [name for name in layers if name not in modules]
    if unknown:
        raise ValueError(f"layers names no module of the model: {unknown}; modules: {[n for n in modules if n]}")
    return {name: modules[name] for name in layers}


def _patch_norms(module: nn.Conv2d, inputs: torch.Tensor, out_hw) -> torch.Tensor:
    """``||x_p||`` of each input patch of a convolution (with the bias's constant 1), ``(N, H_out, W_out)``."""
    if not isinstance(module, nn.Conv2d) or module.groups != 1 or module.padding_mode != "zeros":
        raise ValueError(f"variant='conv' needs nn.Conv2d layers with groups=1 and zero padding, got {module}")
    patches = F.unfold(inputs, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride)
    sq = patches.pow(2).sum(1)
    if module.bias is not None:
        sq = sq + 1
    return sq.sqrt().view(inputs.shape[0], *out_hw)


def normgrad_layer_maps(model: nn.Module, inputs: torch.Tensor, target: Target = None, *, layers=None,
                        variant: str = "identity") -> dict[str, torch.Tensor]:
    """Each layer's NormGrad map at its own resolution, ``{name: (N, H_l, W_l)}`` (one backward pass)."""
    check_choice("variant", variant, ("identity", "conv"))
    x = check_inputs(inputs)
    if x.dim() != 4:
        raise ValueError(f"inputs must be images (N, C, H, W), got shape {tuple(x.shape)}")
    chosen = _layers(model, layers)
    t = resolve_target(model, x, target)
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(name):
        def hook(module, args, output):
            if not isinstance(output, torch.Tensor) or output.dim() != 4:
                raise ValueError(f"layer {name!r} must output (N, C, H, W) feature maps, got {getattr(output, 'shape', type(output).__name__)}")
            seen[name] = (args[0].detach(), output)
        return hook

    handles = [m.register_forward_hook(keep(name)) for name, m in chosen.items()]
    try:
        with torch.enable_grad():
            points = x.requires_grad_(True)  # so every layer output is on the graph even with frozen weights
            score = select(model(points), t).sum()
            missing = [name for name in chosen if name not in seen]
            if missing:
                raise ValueError(f"layers {missing} were not called by the model's forward pass")
            grads = torch.autograd.grad(score, [seen[name][1] for name in chosen], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    maps = {}
    for (name, module), g in zip(chosen.items(), grads):
        layer_in, out = seen[name]
        g = torch.zeros_like(out) if g is None else g
        g_norm = g.detach().norm(dim=1)
        if variant == "identity":
            maps[name] = g_norm * out.detach().norm(dim=1)
        else:
            maps[name] = g_norm * _patch_norms(module, layer_in, out.shape[2:])
    return maps


@register_attribution("normgrad", summary="norm of the per-location weight gradient (activation x gradient outer product) of conv layers",
                      reference="Rebuffi, Fong, Ji, Vedaldi, There and Back Again: Revisiting Backpropagation Saliency Methods, CVPR 2020, arXiv:2004.02866; https://github.com/srebuffi/revisiting_saliency")
def normgrad(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Target = None,
    *,
    layers: Sequence[str] | str | None = None,
    variant: str = "identity",
    combine: str = "product",
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """NormGrad of one layer or several combined, shape of ``inputs`` (every channel the same map).

    Args:
        layers: module names (default: every ``nn.Conv2d``).
        variant: ``"identity"`` (virtual identity layer after each layer) or ``"conv"`` (the layer's weight).
        combine: ``"product"`` or ``"sum"`` of the per-example min-max scaled maps of several layers.
        weights: one non-negative weight per layer (default 1): exponents of the product, factors of the sum.
    """
    check_choice("combine", combine, ("sum", "product"))
    maps = normgrad_layer_maps(model, inputs, target, layers=layers, variant=variant)
    if weights is None:
        w = [1.0] * len(maps)
    else:
        w = [float(v) for v in weights]
        if len(w) != len(maps) or any(not v >= 0 for v in w):
            raise ValueError(f"weights must be {len(maps)} non-negative numbers (one per layer), got {weights!r}")
    x = inputs
    n, size = x.shape[0], tuple(x.shape[2:])
    up = [F.interpolate(m.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0] for m in maps.values()]
    if len(up) == 1:
        return up[0].unsqueeze(1).expand_as(x).contiguous()
    total = None
    for weight, m in zip(w, up):
        flat = m.flatten(1)
        low = flat.amin(1).view(n, 1, 1)
        span = (flat.amax(1).view(n, 1, 1) - low).clamp_min(torch.finfo(m.dtype).tiny)
        m = (m - low) / span
        part = weight * m if combine == "sum" else m ** weight
        total = part if total is None else (total + part if combine == "sum" else total * part)
    return total.unsqueeze(1).expand_as(x).contiguous()
