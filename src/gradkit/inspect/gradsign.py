"""GradSign: predict how well an architecture will train from the signs of its per-sample gradients
at initialisation.

Zhihao Zhang, Zhihao Jia. "GradSign: Model Performance Inference with Theoretical Insights", ICLR 2022,
arXiv:2110.08616. Official code: https://github.com/cmu-catalyst/GradSign.

For the per-sample loss gradients ``g_i`` (``i = 1..n``) of the weights ``theta_k`` at initialisation::

    GradSign = sum_k | sum_i sign(g_{i,k}) |

A weight whose per-sample gradients agree in sign counts ``n``; one on which they cancel counts near 0.
As in the official code, only the ``weight`` tensors of ``nn.Linear`` and ``nn.Conv*`` layers are read
(``parameters="all"`` reads every parameter) and ``sign(0) = 0``. The gradients come from
``torch.func.vmap`` in chunks rather than one backward pass per sample; the metric is the same.
Departure: batch norm cannot run in training mode inside ``vmap``, so models with batch norm are scored
in eval mode (at initialisation its running statistics make it the identity), where the official code
passes each sample alone through the network in training mode (normalising over that sample's positions).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._pergrad import per_example_gradients

__all__ = ["gradsign", "kendall_tau"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _weight_names(model: nn.Module) -> list[str]:
    return [f"{name}.weight" if name else "weight" for name, m in model.named_modules() if isinstance(m, _LAYERS)]


def gradsign(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    *,
    parameters: str = "weights",
    chunk_size: int = 64,
) -> float:
    """The GradSign score of ``model`` on a batch (higher predicts better trained accuracy).

    Args:
        parameters: ``"weights"`` (Linear/Conv weights, the official choice) or ``"all"``.
        chunk_size: per-sample gradients computed this many at a time.
    """
    if parameters not in ("weights", "all"):
        raise ValueError(f"parameters must be one of ('weights', 'all'), got {parameters!r}")
    names = _weight_names(model) if parameters == "weights" else None
    if names is not None and not names:
        raise ValueError("the model has no Linear or Conv layers; use parameters='all'")
    sign_sum = None
    for block in per_example_gradients(model, loss_fn, inputs, targets, chunk_size=chunk_size, names=names):
        s = torch.sign(block).sum(0)
        sign_sum = s if sign_sum is None else sign_sum + s
    return float(sign_sum.abs().sum())


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b rank correlation of two equal-length sequences (ties counted as in scipy).

    >>> kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]), kendall_tau([1, 2, 3], [3, 2, 1])
    (1.0, -1.0)
    """
    a = torch.as_tensor(list(x), dtype=torch.float64)
    b = torch.as_tensor(list(y), dtype=torch.float64)
    if a.dim() != 1 or a.shape != b.shape or a.numel() < 2:
        raise ValueError(f"x and y must be 1-D sequences of the same length >= 2, got {tuple(a.shape)} and {tuple(b.shape)}")
    da = torch.sign(a[:, None] - a[None, :]).triu(1)
    db = torch.sign(b[:, None] - b[None, :]).triu(1)
    concordance = (da * db).sum()
    denominator = torch.sqrt(da.abs().sum() * db.abs().sum())
    return float(concordance / denominator) if denominator > 0 else float("nan")
