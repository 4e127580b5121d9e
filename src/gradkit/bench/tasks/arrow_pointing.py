"""``arrow-pointing``: does the arrow point at the disk? Train at one image size, evaluate at 2x.

The arrow-pointing extrapolation task of pLSTM (Pöppel et al. 2025, arXiv:2506.11997, section 5.1;
generator: https://github.com/ml-jku/arrow_pointing_dataset), generated here in torch, batched, as the
paper describes it: a disk of radius ``r`` and an arrow (a shaft and two head strokes at +-0.5 rad) at
random places at least ``2 r`` apart along each axis (positions wrap around inside the padded canvas);
with probability one half the arrow's ray passes through the disk shrunk by ``1.2`` (label 1), else it
misses the disk grown by ``1.2`` (label 0), so the two classes are separated by a margin. Shapes are 1 on
a 0 background, one channel. Extrapolation keeps every shape's size in pixels and doubles the canvas, so
the arrow and the disk are farther apart on average: what must travel across the image travels farther.

Departures: a 48-pixel canvas (the paper uses 192 and evaluates at 384) with sizes scaled to it (disk
radius 4-7, arrow length 8-14, stroke width 1.5-2.5, padding 6 pixels), anti-aliasing-free rendering,
and a fresh batch every step instead of a fixed 100k-image training set.

The task trains three classifiers side by side on the same batches (``model=all``): the pLSTM vision
model and, as the paper's baselines, a ViT of about the same parameter count (position embedding
resized bicubically to the larger grid) and a CNN; the loss is the sum of their three cross-entropies,
so each model's gradient is its own loss's (an optimizer with a global coupling, such as global-norm
clipping, would couple them). The metric is pLSTM's accuracy at 2x; every model's accuracy at 1x and 2x
is reported next to it. ``model=plstm|vit|cnn`` trains one alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Task
from .registry import register_task

__all__ = ["ArrowPointing", "ArrowGeometry", "arrow_pointing_images", "build_arrow_models"]

MODELS = ("plstm", "vit", "cnn")


@dataclass(frozen=True)
class ArrowGeometry:
    """Shape sizes in pixels (fixed when the canvas grows)."""

    min_radius: float = 4.0
    max_radius: float = 7.0
    min_length: float = 8.0
    max_length: float = 14.0
    min_width: float = 1.5
    max_width: float = 2.5
    padding: float = 6.0
    intersection_factor: float = 1.2
    min_dist_factor: float = 2.0


def _segment_distance(px, py, x0, y0, x1, y1):
    """Distance from pixel centres (px, py) to the segments (x0, y0)-(x1, y1), broadcast."""
    dx, dy = x1 - x0, y1 - y0
    t = (((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy).clamp_min(1e-12)).clamp(0, 1)
    return torch.hypot(px - (x0 + t * dx), py - (y0 + t * dy))


def arrow_pointing_images(n: int, size: int, generator: torch.Generator,
                          geometry: ArrowGeometry = ArrowGeometry()) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (n, 1, size, size) in {0, 1} and labels (n,) in {0, 1} (1: the arrow points at the disk)."""
    g = geometry
    span = size - 2 * g.padding
    needed = 2 * g.min_dist_factor * g.max_radius  # room for the disk's minimum distance on both sides
    if span <= needed:
        raise ValueError(f"size {size} is too small for the geometry (needs > {2 * g.padding + needed:.0f} pixels)")
    u = lambda: torch.rand(n, generator=generator, dtype=torch.float64)  # noqa: E731 - one uniform per image
    label = u() < 0.5
    length = g.min_length + (g.max_length - g.min_length) * u()
    width = g.min_width + (g.max_width - g.min_width) * u()
    ax, ay = span * u(), span * u()
    radius = g.min_radius + (g.max_radius - g.min_radius) * u()
    offset = g.min_dist_factor * radius
    window = span - 2 * offset
    cx = ax + offset + window * u()
    cx = torch.where(cx > span, cx - span, cx)
    cy = ay + offset + window * u()
    cy = torch.where(cy > span, cy - span, cy)
    dx, dy = cx - ax, cy - ay
    reach = torch.where(label, radius / g.intersection_factor, radius * g.intersection_factor)
    half = torch.asin((reach / torch.hypot(dx, dy)).clamp(max=1.0))  # half-angle of the disk seen from the arrow
    toward = torch.atan2(dy, dx)
    spread = torch.where(label, 2 * half, 2 * math.pi - 2 * half)
    phi = toward + spread * u() + torch.where(label, -half, half)
    ax, ay, cx, cy = ax + g.padding, ay + g.padding, cx + g.padding, cy + g.padding

    # Pixel (i, j) is column x = j + 0.5, row y = i + 0.5.
    coords = torch.arange(size, dtype=torch.float64) + 0.5
    py, px = coords.view(1, size, 1), coords.view(1, 1, size)
    col = lambda t: t.view(n, 1, 1)  # noqa: E731
    cos, sin = col(torch.cos(phi)), col(torch.sin(phi))
    half_len = col(length) / 2
    tip_x, tip_y = col(ax) + half_len * cos, col(ay) + half_len * sin
    tail_x, tail_y = col(ax) - half_len * cos, col(ay) - half_len * sin
    head = col(length) / 2.5
    strokes = [_segment_distance(px, py, tail_x, tail_y, tip_x, tip_y)]
    for turn in (-0.5, 0.5):
        back = col(phi) + turn
        strokes.append(_segment_distance(px, py, tip_x - head * torch.cos(back), tip_y - head * torch.sin(back), tip_x, tip_y))
    arrow = torch.stack(strokes).amin(0) <= col(width) / 2
    disk = torch.hypot(px - col(cx), py - col(cy)) <= col(radius)
    images = (arrow | disk).to(torch.float32).unsqueeze(1)
    return images, label.long()


def build_arrow_models(names, *, image_size: int, patch_size: int, dim: int, form: str = "parallel") -> nn.ModuleDict:
    """The task's classifiers, parameter counts matched by construction (about 29k at dim 32)."""
    from gradkit.models import CNNClassifier, PLSTMVision, ViTClassifier

    grid = image_size // patch_size
    makers = {
        "plstm": lambda: PLSTMVision(1, 2, dim=dim, depth=1, num_heads=1, patch_size=patch_size, grid=grid, form=form),
        "vit": lambda: ViTClassifier(1, 2, dim=dim, depth=2, num_heads=2, patch_size=patch_size, grid=grid),
        "cnn": lambda: CNNClassifier(1, 2, channels=dim, depth=3, patch_size=patch_size),
    }
    return nn.ModuleDict({name: makers[name]() for name in names})


@dataclass(frozen=True)
class _Data:
    train_x: torch.Tensor  # a fixed sample of training images, for the "train" evaluation
    train_y: torch.Tensor
    val: dict  # size -> (images, labels)


@register_task
class ArrowPointing(Task):
    name = "arrow-pointing"
    summary = ("arrow-pointing extrapolation (pLSTM paper): train at 48 px, evaluate at 48 and 96 px; "
               "pLSTM, ViT and CNN side by side, metric pLSTM accuracy at 2x")
    metric = "accuracy_2x"
    higher_is_better = True
    #: What a run of this task alone should use when the command line names no optimizer or seed count
    #: (three models per run make the arena's default list of ten optimizers x 3 seeds ~30x too long).
    default_optimizers = ("adamw",)
    default_seeds = 1
    defaults = {"steps": 300, "eval_every": 300, "batch_size": 32, "image_size": 48, "patch_size": 6,
                "dim": 32, "val_images": 256, "model": "all"}

    def __init__(self, **options):
        super().__init__(**options)
        model = self.options["model"]
        if model != "all" and model not in MODELS:
            raise ValueError(f"task {self.name!r}: model must be 'all' or one of {', '.join(MODELS)}; got {model!r}")
        self.models = MODELS if model == "all" else (model,)
        size, patch = self.options["image_size"], self.options["patch_size"]
        if size % patch:
            raise ValueError(f"task {self.name!r}: image_size ({size}) must be a multiple of patch_size ({patch})")
        self.sizes = (size, 2 * size)

    def load(self, device):
        generator = torch.Generator().manual_seed(20250613)  # fixed evaluation sets, whatever the run's seed
        n = self.options["val_images"]
        train_x, train_y = arrow_pointing_images(n, self.sizes[0], generator)
        val = {s: tuple(t.to(device) for t in arrow_pointing_images(n, s, generator)) for s in self.sizes}
        return _Data(train_x.to(device), train_y.to(device), val)

    def build_model(self):
        return build_arrow_models(self.models, image_size=self.options["image_size"],
                                  patch_size=self.options["patch_size"], dim=self.options["dim"])

    def sample(self, data, generator):
        images, labels = arrow_pointing_images(self.batch_size, self.sizes[0], generator)
        return images.to(data.train_x.device), labels.to(data.train_x.device)

    def losses(self, model, batch):
        images, labels = batch
        return sum(F.cross_entropy(net(images), labels) for net in model.values())

    @torch.no_grad()
    def evaluate(self, model, data, split):
        if split == "train":
            sets = {"1x": (data.train_x, data.train_y)}
        elif split == "val":
            sets = {"1x": data.val[self.sizes[0]], "2x": data.val[self.sizes[1]]}
        else:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        out: dict[str, float] = {}
        for name, net in model.items():
            for tag, (images, labels) in sets.items():
                logits = torch.cat([net(chunk) for chunk in images.split(64)])
                out[f"{name}_loss_{tag}"] = float(F.cross_entropy(logits, labels))
                out[f"{name}_acc_{tag}"] = float((logits.argmax(-1) == labels).float().mean())
        lead = self.models[0]
        tag = "2x" if split == "val" else "1x"
        out["loss"] = out[f"{lead}_loss_{tag}"]
        out["metric"] = out[f"{lead}_acc_{tag}"]
        return out
