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
"""
from __future__ import annotations

import torch

__all__ = ["spectral_decoupling"]


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
