"""Approximate orthogonalization ``G -> U V^T`` by a quintic Newton-Schulz iteration, batched.

Jordan et al., "Muon: An optimizer for hidden layers in neural networks" (2024),
https://kellerjordan.github.io/posts/muon/; official code https://github.com/KellerJordan/Muon.

With ``X_0 = G / (||G||_F + eps)`` (so every singular value is at most 1), each step applies the odd
polynomial ``p(x) = a x + b x^3 + c x^5`` to the singular values::

    A = X X^T;   X <- a X + (b A + c A A) X

Muon's coefficients ``(3.4445, -4.7750, 2.0315)`` maximise the slope at zero instead of converging
to exactly 1: after 5 steps the singular values of the result lie in a band around 1, not at 1.
Measured for random matrices (fp32 and bf16, sizes up to 64): every singular value that is at
least 1e-2 of the largest ends in [0.6, 1.25] (``SINGULAR_VALUE_BAND``); smaller ones grow by at
most that factor's fifth power per step and may stay below the band. Matrices of the same shape are
stacked and iterated together with batched matmuls; wide matrices are iterated as ``X X^T`` on the
short side (tall ones are transposed first).

Compute dtype ``"auto"`` (the default): bfloat16 on CUDA devices with native bf16, as the official code,
float32 elsewhere. On CPUs bf16 matmul is emulated (64x64 ``bmm``: 907 us against 42 us in float32) or,
with AVX512-BF16, still 1.9x slower up to 64x64 (``benchmarks/newton_schulz_dtype.py``). Pass a dtype
(Muon: ``ns_dtype``) to choose.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["MUON_COEFFICIENTS", "SINGULAR_VALUE_BAND", "newton_schulz", "orthogonalize", "coefficient_schedule",
           "compute_dtype"]

MUON_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
SINGULAR_VALUE_BAND = (0.6, 1.25)


def coefficient_schedule(coefficients, steps: int) -> list[tuple[float, float, float]]:
    """One ``(a, b, c)`` per step: a single triple is repeated; a list's last triple is reused.

    >>> coefficient_schedule([(3, -4, 2), (2, -1, 0)], 3)
    [(3.0, -4.0, 2.0), (2.0, -1.0, 0.0), (2.0, -1.0, 0.0)]
    """
    if isinstance(coefficients, (tuple, list)) and len(coefficients) == 3 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in coefficients):
        return [tuple(float(x) for x in coefficients)] * steps
    triples = [tuple(float(x) for x in t) for t in coefficients]
    if not triples or any(len(t) != 3 for t in triples):
        raise ValueError(f"ns_coefficients must be an (a, b, c) triple or a non-empty list of triples, got {coefficients!r}")
    return [triples[min(i, len(triples) - 1)] for i in range(steps)]


def compute_dtype(device: torch.device | str) -> torch.dtype:
    """What ``dtype="auto"`` iterates in: bfloat16 on CUDA devices with native bf16, float32 elsewhere."""
    if torch.device(device).type != "cuda":
        return torch.float32
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch without the argument
        native = torch.cuda.get_device_capability(device)[0] >= 8
    return torch.bfloat16 if native else torch.float32


def newton_schulz(g: Tensor, steps: int = 5, coefficients=MUON_COEFFICIENTS, dtype: torch.dtype | str | None = "auto",
                  eps: float = 1e-7) -> Tensor:
    """Orthogonalize a matrix or a batch of matrices (``(..., m, n)``); the result is in the compute dtype:
    ``"auto"`` (:func:`compute_dtype` of ``g``'s device), a torch dtype, or None for ``g``'s own dtype.

    ``X <- a X + (b A + c A^2) X`` with ``A = X X^T``, from ``X_0 = G / (||G||_F + eps)``.

    >>> g = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    >>> s = torch.linalg.svdvals(newton_schulz(g, dtype=torch.float32))
    >>> bool(((s > SINGULAR_VALUE_BAND[0]) & (s < SINGULAR_VALUE_BAND[1])).all())
    True
    """
    if g.ndim < 2:
        raise ValueError(f"newton_schulz needs a matrix or a batch of matrices, got shape {tuple(g.shape)}")
    if dtype == "auto":
        dtype = compute_dtype(g.device)
    tall = g.size(-2) > g.size(-1)
    x = g.mT if tall else g
    x = x.to(dtype or g.dtype)
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
    for a, b, c in coefficient_schedule(coefficients, steps):
        gram = x @ x.mT
        poly = b * gram + c * (gram @ gram)
        x = a * x + poly @ x
    return x.mT if tall else x


def orthogonalize(matrices: Sequence[Tensor], steps: int = 5, coefficients=MUON_COEFFICIENTS,
                  dtype: torch.dtype | str | None = "auto", eps: float = 1e-7) -> list[Tensor]:
    """:func:`newton_schulz` of every matrix, one batched iteration per distinct shape and device.

    Returns tensors in each input's own dtype.

    >>> out = orthogonalize([torch.eye(3) * 2, torch.ones(2, 5)], dtype=torch.float32)
    >>> [tuple(o.shape) for o in out]
    [(3, 3), (2, 5)]
    """
    by_shape: dict[tuple, list[int]] = defaultdict(list)
    for i, m in enumerate(matrices):
        by_shape[(tuple(m.shape), m.device, m.dtype)].append(i)
    out: list[Tensor | None] = [None] * len(matrices)
    for (_, _, out_dtype), indices in by_shape.items():
        batch = torch.stack([matrices[i] for i in indices])
        result = newton_schulz(batch, steps, coefficients, dtype, eps).to(out_dtype)
        for i, r in zip(indices, result.unbind()):
            out[i] = r
    return out  # type: ignore[return-value]
