"""Gradient flow over distance and depth: how much of an output's gradient reaches each input position.

For a model and a batch, :func:`input_gradient_map` gives, per example and input position, the norm of
the gradient of one output (a class logit, or the whole output vector at one position) with respect to
the input there; :func:`distance_profile` reduces such a map to a curve against distance from a chosen
position; :func:`block_gradient_norms` gives the norm of the gradient reaching each block's output, over
depth. :func:`plot_gradient_flow` draws heat maps over the grid and decay curves, several models side by
side. This is the measurement behind pLSTM's claim (Pöppel et al. 2025, arXiv:2506.11997) that its
normalised Transitions keep long-range gradients from vanishing or exploding. Nothing here changes
parameters or their ``.grad``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["input_gradient_map", "distance_profile", "block_gradient_norms", "plot_gradient_flow"]

_LAYOUTS = ("image", "grid", "sequence")


def _position_norms(grad: torch.Tensor, layout: str, patch_size: int) -> torch.Tensor:
    """Per-position 2-norm of an input-shaped gradient: (B, H/p, W/p), (B, X, Y) or (B, L)."""
    if layout == "image":
        b, c, h, w = grad.shape
        if h % patch_size or w % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide the image sides {h} x {w}")
        blocks = grad.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
        return blocks.pow(2).sum((1, 3, 5)).sqrt()
    return grad.pow(2).sum(-1).sqrt()


def input_gradient_map(model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                       target: int | torch.Tensor | None = None, *, position: Sequence[int] | None = None,
                       layout: str | None = None, patch_size: int = 1) -> torch.Tensor:
    """Norm of the gradient of one output with respect to every input position, per example.

    Args:
        model: a callable; with ``position=None`` it returns logits (B, classes), else features
            (B, *positions, D), e.g. a vision model's patch grid (B, X, Y, D) or a layer's output.
        inputs: (B, C, H, W) images, (B, X, Y, D) grids or (B, L, D) sequences (see ``layout``).
        target: class logit to differentiate (an int or one per example); default: the predicted class.
            Only with ``position=None``.
        position: differentiate the output vector at this position instead: the value is the Frobenius
            norm of the Jacobian block d out[position] / d inputs[p], one vector-Jacobian product per
            output feature (batched).
        layout: "image", "grid" or "sequence"; default "image" for 4-D inputs, "sequence" for 3-D.
        patch_size: images only: norms are taken over ``patch_size`` x ``patch_size`` pixel blocks (and
            channels), so the map lives on the model's patch grid.

    Returns:
        (B, H/p, W/p) for images, (B, X, Y) for grids, (B, L) for sequences.
    """
    if layout is None:
        layout = {4: "image", 3: "sequence"}.get(inputs.ndim)
        if layout is None:
            raise ValueError(f"inputs must be 3-D or 4-D unless layout is given; got shape {tuple(inputs.shape)}")
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, _LAYOUTS))}; got {layout!r}")
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    x = inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        if position is None:
            if out.ndim != 2:
                raise ValueError(f"with position=None the model must return (batch, classes); got {tuple(out.shape)}")
            if target is None:
                target = out.argmax(-1)
            index = torch.as_tensor(target, device=out.device).expand(out.shape[0]).view(-1, 1)
            (grad,) = torch.autograd.grad(out.gather(1, index).sum(), x)
            return _position_norms(grad, layout, patch_size)
        if target is not None:
            raise ValueError("give either target (a class logit) or position (an output position), not both")
        position = tuple(position)
        if out.ndim != 2 + len(position):
            raise ValueError(f"position {position} does not index the output's positions; output shape {tuple(out.shape)}")
        picked = out[(slice(None), *position)]  # (B, D)
        features = picked.shape[-1]
        # One vector-Jacobian product per output feature, batched: the rows of the Jacobian.
        basis = torch.eye(features, dtype=picked.dtype, device=picked.device)[:, None, :].expand(features, *picked.shape)
        (rows,) = torch.autograd.grad(picked, x, basis, is_grads_batched=True)  # (D, *inputs.shape)
    per_row = torch.stack([_position_norms(r, layout, patch_size) for r in rows])
    return per_row.pow(2).sum(0).sqrt()


def distance_profile(grad_map: torch.Tensor, origin: Sequence[int], *, metric: str = "manhattan",
                     reduce: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient norm against distance from ``origin``.

    ``grad_map``: (..., X, Y) or (..., L) (a map from :func:`input_gradient_map`; leading dimensions,
    such as the batch, are averaged first). ``metric``: "manhattan" (the number of edges a pLSTM path
    crosses) or "chebyshev". ``reduce``: "mean" or "max" over the positions at each distance.
    Returns ``(distances, values)``, one entry per distance present in the map.
    """
    origin = tuple(origin)
    if metric not in ("manhattan", "chebyshev"):
        raise ValueError(f"metric must be 'manhattan' or 'chebyshev'; got {metric!r}")
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' or 'max'; got {reduce!r}")
    if not 1 <= len(origin) <= 2 or grad_map.ndim < len(origin):
        raise ValueError(f"origin {origin} must index the last one or two dimensions of a map of shape {tuple(grad_map.shape)}")
    spatial = grad_map.shape[-len(origin):]
    mean_map = grad_map.reshape(-1, *spatial).double().mean(0)
    axes = torch.meshgrid(*[torch.arange(n) for n in spatial], indexing="ij")
    offsets = torch.stack([(a - o).abs() for a, o in zip(axes, origin)])
    dist = offsets.sum(0) if metric == "manhattan" else offsets.amax(0)
    distances = torch.unique(dist)
    flat_d, flat_v = dist.flatten(), mean_map.flatten()
    if reduce == "mean":
        values = torch.zeros(int(distances.max()) + 1, dtype=torch.float64).index_add_(0, flat_d, flat_v)
        values = values[distances] / torch.bincount(flat_d)[distances]
    else:
        values = torch.full((int(distances.max()) + 1,), -math.inf, dtype=torch.float64)
        values = values.scatter_reduce_(0, flat_d, flat_v, "amax")[distances]
    return distances, values


def block_gradient_norms(model: nn.Module, inputs: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor],
                         blocks: Sequence[tuple[str, nn.Module]] | None = None) -> list[tuple[str, float]]:
    """Norm of the gradient of ``objective(model(inputs))`` (a scalar) with respect to each block's
    output, in forward order: the gradient that reaches each depth.

    ``blocks``: (name, module) pairs; default ``model.blocks`` when the model has such a list, else its
    direct children. Parameters' ``.grad`` is left as it was.
    """
    if blocks is None:
        container = getattr(model, "blocks", None)
        blocks = list(container.named_children()) if isinstance(container, nn.Module) else list(model.named_children())
        if container is not None:
            blocks = [(f"blocks.{n}", m) for n, m in blocks]
    if not blocks:
        raise ValueError("the model has no blocks to measure; pass blocks=[(name, module), ...]")
    captured: list[tuple[str, torch.Tensor]] = []
    handles = [module.register_forward_hook(lambda _m, _i, out, name=name: captured.append((name, out)))
               for name, module in blocks]
    try:
        with torch.enable_grad():
            value = objective(model(inputs))
            if value.ndim != 0:
                raise ValueError(f"objective must return a scalar; got shape {tuple(value.shape)}")
            outs = [(n, o) for n, o in captured if isinstance(o, torch.Tensor) and o.requires_grad]
            grads = torch.autograd.grad(value, [o for _, o in outs], allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    return [(n, 0.0 if g is None else float(g.norm())) for (n, _), g in zip(outs, grads)]


def plot_gradient_flow(maps: dict[str, torch.Tensor], image: torch.Tensor | None, path: str | Path, *,
                       profiles: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                       origin: Sequence[int] | None = None, title: str | None = None,
                       machine: str | None = None, ylabel: str = "gradient norm (mean over positions)") -> Path:
    """Heat maps of gradient flow (one per model, mean over the batch, log colour scale) next to an
    example input, and below them decay curves against distance.

    ``maps``: name -> (B, X, Y) from :func:`input_gradient_map`. ``profiles``: name -> (distances,
    values) for the curves; default: :func:`distance_profile` of each map around ``origin`` (default:
    the grid's centre); distances where the gradient is exactly zero are left out of the curve.
    ``machine`` is written under the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    if not maps:
        raise ValueError("maps: give at least one model's map")
    names = list(maps)
    cols = len(names) + (image is not None)
    fig = plt.figure(figsize=(3.4 * max(cols, 2), 6.8))
    grid_spec = fig.add_gridspec(2, cols, height_ratios=(1, 1.1))
    col = 0
    if image is not None:
        ax = fig.add_subplot(grid_spec[0, 0])
        ax.imshow(image.detach().cpu(), cmap="gray_r")
        ax.set_title("example input")
        ax.axis("off")
        col = 1
    for name in names:
        mean_map = maps[name].detach().double().mean(0).cpu()
        positive = mean_map[mean_map > 0]
        floor = float(positive.min()) if positive.numel() else 1e-12
        ax = fig.add_subplot(grid_spec[0, col])
        im = ax.imshow(mean_map.clamp_min(floor), norm=LogNorm(vmin=floor, vmax=max(float(mean_map.max()), floor * 10)), cmap="magma")
        ax.set_title(name)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046)
        col += 1
    curve_ax = fig.add_subplot(grid_spec[1, :])
    for name in names:
        if profiles is not None and name in profiles:
            d, v = profiles[name]
        else:
            grid = maps[name].shape[-2:]
            d, v = distance_profile(maps[name], origin or (grid[0] // 2, grid[1] // 2))
        keep = v > 0  # an exact zero (outside a receptive field) has no place on a log axis
        curve_ax.semilogy(d[keep].cpu(), v[keep].cpu(), marker="o", ms=3, label=name)
    curve_ax.set_xlabel("distance (patches, Manhattan)")
    curve_ax.set_ylabel(ylabel)
    curve_ax.grid(True, which="both", alpha=0.3)
    curve_ax.legend()
    if title:
        fig.suptitle(title)
    if machine:
        fig.text(0.99, 0.005, machine, ha="right", va="bottom", fontsize=7, color="gray")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
