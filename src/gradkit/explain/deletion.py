"""Deletion and insertion curves: how fast the target score falls (rises) as the most important
pixels are removed (added) in the order an attribution ranks them.

Vitali Petsiuk, Abir Das, Kate Saenko. "RISE: Randomized Input Sampling for Explanation of
Black-box Models". BMVC 2018, arXiv:1806.07421 (official code: https://github.com/eclique/RISE);
the metrics I-GOS is evaluated with (Qi, Khorram, Li, AAAI 2020, https://github.com/zhongangqi/IGOS).

Pixels are ranked by the attribution summed over channels (``(N, C, ...)`` inputs) or feature by
feature (``(N, F)`` inputs); ties keep the pixel order. At step ``k`` of ``steps`` (default: one per pixel,
at most 100) the top ``round(k P / steps)`` of the ``P`` pixels are replaced by the baseline
(deletion) or are the only ones taken from the input (insertion). The score is the softmax
probability of the target class (``probabilities=False``: the raw score). The area under the curve
uses the trapezoid rule over the fraction of pixels in [0, 1]; lower deletion AUC and higher
insertion AUC are better. All ``(steps + 1) * N`` images are scored in batches of ``batch_size`` (default: all at once).
Departure from the I-GOS evaluation code: it deletes at the mask's resolution and sums rectangles;
here pixels are the input's and the rule is the trapezoid.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._common import Model, Target, as_baseline, check_choice, check_inputs, check_positive_int, resolve_target, select

__all__ = ["Curve", "deletion_curve", "insertion_curve", "area_under_curve"]


@dataclass(frozen=True)
class Curve:
    """``fractions`` (steps + 1,), ``scores`` (N, steps + 1) and ``auc`` (N,)."""

    fractions: torch.Tensor
    scores: torch.Tensor
    auc: torch.Tensor


def area_under_curve(fractions: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    return torch.trapezoid(scores, fractions, dim=-1)


def _curve(mode, model, inputs, target, attributions, steps, baselines, batch_size, probabilities) -> Curve:
    check_choice("mode", mode, ("deletion", "insertion"))
    x = check_inputs(inputs)
    if not isinstance(attributions, torch.Tensor) or attributions.shape != x.shape:
        raise ValueError(f"attributions must be a tensor of the inputs' shape {tuple(x.shape)}, got {getattr(attributions, 'shape', type(attributions).__name__)}")
    n = x.shape[0]
    image = x.dim() >= 3
    importance = (attributions.detach().sum(1) if image else attributions.detach()).reshape(n, -1)
    pixels = importance.shape[1]
    steps = min(pixels, 100) if steps is None else check_positive_int("steps", steps)
    b = as_baseline(baselines, x).expand_as(x)
    t = resolve_target(model, x, target)
    order = torch.argsort(importance.to(torch.float64), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels, device=x.device).expand(n, -1))
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) * pixels / steps).long().to(x.device)
    removed = rank.unsqueeze(0) < counts.view(-1, 1, 1)  # (S+1, N, P): pixel among the top counts
    keep = ~removed if mode == "deletion" else removed
    pixel_shape = (n,) + ((1,) + tuple(x.shape[2:]) if image else tuple(x.shape[1:]))
    keep = keep.view((steps + 1,) + pixel_shape).to(x.dtype)
    total = (steps + 1) * n
    chunk = total if batch_size is None else check_positive_int("batch_size", batch_size)
    flat_keep = keep.reshape((total,) + pixel_shape[1:])
    scores = []
    with torch.no_grad():
        for start in range(0, total, chunk):
            rows = torch.arange(start, min(start + chunk, total), device=x.device)
            sample = rows % n  # row = step * N + sample
            points = torch.lerp(b[sample], x[sample], flat_keep[rows])
            out = model(points)
            if probabilities and out.dim() == 2 and out.shape[1] > 1:
                out = out.softmax(dim=1)
            scores.append(select(out, None if t is None else t[sample]))
    scores = torch.cat(scores).view(steps + 1, n).T.contiguous()
    fractions = counts.to(scores.dtype) / pixels
    return Curve(fractions, scores, area_under_curve(fractions, scores))


def deletion_curve(
    model: Model,
    inputs: torch.Tensor,
    target: Target,
    attributions: torch.Tensor,
    *,
    steps: int | None = None,
    baselines=None,
    batch_size: int | None = None,
    probabilities: bool = True,
) -> Curve:
    """Score as the most important pixels are replaced by ``baselines`` (default zeros).

    ``steps`` defaults to one per pixel, at most 100.
    """
    return _curve("deletion", model, inputs, target, attributions, steps, baselines, batch_size, probabilities)


def insertion_curve(
    model: Model,
    inputs: torch.Tensor,
    target: Target,
    attributions: torch.Tensor,
    *,
    steps: int | None = None,
    baselines=None,
    batch_size: int | None = None,
    probabilities: bool = True,
) -> Curve:
    """Score as the most important pixels are put back onto ``baselines`` (default zeros)."""
    return _curve("insertion", model, inputs, target, attributions, steps, baselines, batch_size, probabilities)
