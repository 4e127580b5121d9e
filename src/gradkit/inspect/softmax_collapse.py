"""Softmax Collapse: the share of samples whose cross-entropy gradient is exactly zero in floating point.

Prieto, Barsbey, Mediano & Birdal, "Grokking at the Edge of Numerical Stability", ICLR 2025,
arXiv:2501.04697; official code https://github.com/LucasPrietoAl/grokking-at-the-edge-of-numerical-stability.

The gradient of the cross-entropy with respect to the logits is ``softmax(z) - onehot(y)``. Once the
correct logit leads the others by enough, ``sum_j exp(z_j)`` absorbs every other term, the correct
class's probability rounds to exactly 1 and its gradient ``p_y - 1`` to exactly 0: that sample stops
teaching the model anything about its class (Softmax Collapse, SC). Two shares are reported, both
from the gradient that autograd actually computes for ``torch.nn.functional.cross_entropy`` in the
logits' dtype:

- ``collapsed``: samples whose correct-class gradient is exactly 0 (the paper's SC: ``p_y`` rounded to 1);
- ``zero_gradient``: samples whose whole gradient row is exactly 0 (the wrong classes' ``exp`` underflowed
  as well, so not even the other logits move).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["softmax_collapse", "SoftmaxCollapse"]


@dataclass(frozen=True)
class SoftmaxCollapse:
    """Shares (in [0, 1]) of the samples: ``collapsed`` (correct-class gradient exactly 0) and
    ``zero_gradient`` (every class's gradient exactly 0); ``samples`` counted."""

    collapsed: float
    zero_gradient: float
    samples: int


def softmax_collapse(logits: torch.Tensor, target: torch.Tensor) -> SoftmaxCollapse:
    """The Softmax-Collapse shares of a batch of logits (see the module docstring).

    Args:
        logits: ``(N, classes)`` floating-point scores, in the dtype the training computes the loss in.
        target: ``(N,)`` class indices.

    >>> logits = torch.tensor([[0.0, 200.0], [0.0, 20.0], [0.0, 1.0]])
    >>> softmax_collapse(logits, torch.tensor([1, 1, 1]))
    SoftmaxCollapse(collapsed=0.6666666666666666, zero_gradient=0.3333333333333333, samples=3)
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point (N, classes) tensor, got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")
    if (not isinstance(target, torch.Tensor) or target.is_floating_point() or target.is_complex()
            or target.shape != logits.shape[:1]):
        raise ValueError(f"target must be an integer tensor of shape ({logits.shape[0]},), got "
                         f"{getattr(target, 'dtype', type(target).__name__)} {tuple(getattr(target, 'shape', ()))}")
    n = logits.shape[0]
    if n == 0:
        raise ValueError("logits must hold at least one sample, got N = 0")
    with torch.enable_grad():
        z = logits.detach().requires_grad_(True)
        # a sum, not a mean: each row's gradient is its own, unscaled by 1 / N (which could round it)
        (grad,) = torch.autograd.grad(F.cross_entropy(z, target.long(), reduction="sum"), z)
    correct = grad.gather(1, target.long().unsqueeze(1)).squeeze(1)
    collapsed = (correct == 0).sum().item()
    zero_rows = (grad == 0).all(dim=1).sum().item()
    return SoftmaxCollapse(collapsed=collapsed / n, zero_gradient=zero_rows / n, samples=n)
