"""Loss terms that shape what a network learns, added to the training loss.

``spectral_decoupling``: Mohammad Pezeshki, Sekou-Oumar Kaba, Yoshua Bengio, Aaron Courville, Doina
Precup, Guillaume Lajoie. "Gradient Starvation: A Learning Proclivity in Neural Networks", NeurIPS 2021,
arXiv:2011.09468. Official code: https://github.com/mohammadpz/Gradient_Starvation.

Cross-entropy keeps rewarding a feature that already separates the data, which starves the others of
gradient. Spectral Decoupling penalises the network's outputs (logits) instead of its weights::

    L = CE(y_hat, y) + lambda / 2 * mean_i ||y_hat_i - gamma||^2

which, in the paper's linearised analysis, decouples the dynamics of the features so each is learned on
its own. ``gamma = 0`` is the paper's main form; a per-class ``lambda`` and ``gamma`` (tensors of the
number of classes) is the variant of its appendix and code.

``stablemax`` / ``stablemax_cross_entropy``: Lucas Prieto, Melih Barsbey, Pedro Mediano, Tolga Birdal.
"Grokking at the Edge of Numerical Stability", ICLR 2025, arXiv:2501.04697. Official code:
https://github.com/LucasPrietoAl/grokking-at-the-edge-of-numerical-stability.

Softmax normalises ``exp(x)``, which absorbs every other class once one logit leads by a few tens
(float32), so the correct class's probability rounds to exactly 1 and its gradient to exactly 0
(Softmax Collapse). StableMax normalises a function that grows linearly instead::

    s(x) = x + 1 (x >= 0),   1 / (1 - x) (x < 0);      StableMax(x)_i = s(x_i) / sum_j s(x_j)

and the loss is ``-log StableMax(x)_y``, computed in log space: ``log s(x) = log1p(x)`` or
``-log1p(-x)``, minus ``log sum_j s(x_j)``. The official code adds ``1e-30`` inside ``1 / (1 - x)``
and upcasts the logits to float64; here the computation stays in the logits' dtype (the log-space
form needs no guard: ``1 - x >= 1`` for ``x < 0``), which is what keeps it usable in float32.
"""
from __future__ import annotations

import torch

__all__ = ["spectral_decoupling", "stablemax", "log_stablemax", "stablemax_cross_entropy"]


def spectral_decoupling(logits: torch.Tensor, weight: float | torch.Tensor = 0.01, gamma: float | torch.Tensor = 0.0) -> torch.Tensor:
    """``weight / 2 * mean over examples of ||logits - gamma||^2``; add it to the cross-entropy.

    Args:
        logits: ``(N, classes)`` or ``(N,)`` outputs before the softmax / sigmoid.
        weight: lambda, a number >= 0 or one per class.
        gamma: the logit value the penalty pulls towards, a number or one per class.

    >>> spectral_decoupling(torch.tensor([[1.0, -1.0], [2.0, 0.0]]), weight=0.5).item()
    0.75
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() not in (1, 2) or not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point (N, classes) or (N,) tensor, got {getattr(logits, 'shape', type(logits).__name__)}")
    for name, value in (("weight", weight), ("gamma", gamma)):
        if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
            raise TypeError(f"{name} must be a number or a tensor with one entry per class, got {value!r}")
    w = torch.as_tensor(weight, dtype=logits.dtype, device=logits.device)
    if (w < 0).any():
        raise ValueError(f"weight must be >= 0, got {weight!r}")
    g = torch.as_tensor(gamma, dtype=logits.dtype, device=logits.device)
    per_entry = 0.5 * w * (logits - g).pow(2)
    return per_entry.reshape(logits.shape[0], -1).sum(1).mean()


def _check_logits(logits) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() < 1 or not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor with a class dimension, got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")


def _log_s(x: torch.Tensor) -> torch.Tensor:
    # where() evaluates both branches: clamp each to its own domain so that neither makes a NaN
    # gradient on the side that is not selected
    return torch.where(x >= 0, torch.log1p(x.clamp_min(0)), -torch.log1p(-x.clamp_max(0)))


def log_stablemax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log StableMax(logits)`` along ``dim``, in log space (see the module docstring).

    >>> log_stablemax(torch.tensor([1.0, 0.0, -1.0, -1.0])).exp()  # s = 2, 1, 1/2, 1/2
    tensor([0.5000, 0.2500, 0.1250, 0.1250])
    """
    _check_logits(logits)
    s = torch.where(logits >= 0, logits + 1, 1 / (1 - logits.clamp_max(0)))
    return _log_s(logits) - torch.log(s.sum(dim=dim, keepdim=True))


def stablemax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """StableMax: ``s(x_i) / sum_j s(x_j)`` with ``s(x) = x + 1`` for ``x >= 0`` and ``1 / (1 - x)`` below.

    >>> stablemax(torch.tensor([1.0, 0.0, -1.0, -1.0]))
    tensor([0.5000, 0.2500, 0.1250, 0.1250])
    """
    return log_stablemax(logits, dim).exp()


def stablemax_cross_entropy(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``-log StableMax(logits)[target]``, the cross-entropy with StableMax in place of softmax.

    Args:
        logits: ``(N, classes)`` scores.
        target: ``(N,)`` class indices.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``, as ``torch.nn.functional.cross_entropy``.

    >>> round(stablemax_cross_entropy(torch.tensor([[1.0, 0.0, -1.0, -1.0]]), torch.tensor([0])).item(), 4)  # -log 0.5
    0.6931
    """
    _check_logits(logits)
    if logits.dim() != 2:
        raise ValueError(f"logits must be (N, classes), got shape {tuple(logits.shape)}")
    if (not isinstance(target, torch.Tensor) or target.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8)
            or target.shape != logits.shape[:1]):
        raise ValueError(f"target must be an integer tensor of shape ({logits.shape[0]},), got "
                         f"{getattr(target, 'dtype', type(target).__name__)} {tuple(getattr(target, 'shape', ()))}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    losses = -log_stablemax(logits).gather(1, target.long().unsqueeze(1)).squeeze(1)
    if reduction == "mean":
        return losses.mean()
    return losses.sum() if reduction == "sum" else losses
