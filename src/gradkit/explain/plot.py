"""Pictures of attributions: a grid with the input, then one overlaid heatmap per method.

Rendered with matplotlib's Agg canvas directly (no global backend switch, no display needed).
Each heatmap is the absolute attribution summed over channels, scaled to [0, 1] per image, drawn
over the grey-scale input; one colour bar beside the grid gives the scale.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

__all__ = ["heatmap", "plot_attributions"]


def heatmap(attributions: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` or ``(N, H, W)`` attributions -> ``(N, H, W)`` in [0, 1]."""
    a = attributions.detach().float().cpu().abs()
    if a.dim() == 4:
        a = a.sum(1)
    if a.dim() != 3:
        raise ValueError(f"attributions must be (N, C, H, W) or (N, H, W), got shape {tuple(attributions.shape)}")
    peak = a.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return a / peak


def _grey(inputs: torch.Tensor) -> torch.Tensor:
    x = inputs.detach().float().cpu()
    x = x.mean(1) if x.dim() == 4 else x
    lo, hi = x.flatten(1).amin(1).view(-1, 1, 1), x.flatten(1).amax(1).view(-1, 1, 1)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def plot_attributions(
    inputs: torch.Tensor,
    attributions: Mapping[str, torch.Tensor],
    path: str | Path | None = None,
    *,
    row_titles: list[str] | None = None,
    cmap: str = "jet",
    alpha: float = 0.55,
    cell_inches: float = 1.6,
    dpi: int = 100,
):
    """Draw one row per input: the input, then each method's heatmap over it; save a PNG to ``path``.

    Returns the matplotlib ``Figure``.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("gradkit.explain.plot needs matplotlib: pip install 'gradkit[bench]'") from err
    if not attributions:
        raise ValueError("attributions must map at least one method name to a tensor")
    grey = _grey(inputs)
    maps = {name: heatmap(a) for name, a in attributions.items()}
    for name, m in maps.items():
        if m.shape != grey.shape:
            raise ValueError(f"attributions[{name!r}] has spatial shape {tuple(m.shape)}, inputs {tuple(grey.shape)}")
    if row_titles is not None and len(row_titles) != grey.shape[0]:
        raise ValueError(f"row_titles must have one entry per input ({grey.shape[0]}), got {len(row_titles)}")
    rows, cols = grey.shape[0], 1 + len(maps)
    fig = Figure(figsize=(cell_inches * cols + 0.9, cell_inches * rows + 0.3), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    overlay = None
    for r in range(rows):
        axes[r][0].imshow(grey[r].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[r][0].set_title("input" if row_titles is None else row_titles[r], fontsize=9)
        for c, (name, m) in enumerate(maps.items(), start=1):
            axes[r][c].imshow(grey[r].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            overlay = axes[r][c].imshow(m[r].numpy(), cmap=cmap, vmin=0, vmax=1, alpha=alpha, interpolation="nearest")
            if r == 0:
                axes[r][c].set_title(name, fontsize=9)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    bar = fig.colorbar(overlay, ax=[ax for row in axes for ax in row[1:]], shrink=0.9, pad=0.02)
    bar.set_label("|attribution| / image max", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    return fig
