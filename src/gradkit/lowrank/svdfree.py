"""SVD-free low-rank Adam: GaLore with a DCT basis whose columns are chosen by alignment with the gradient.

Modoranu et al., "SVD-Free Low-Rank Adaptive Gradient Optimization for Large
Language Models", 2025, arXiv:2505.17967 (the authors release it as DCT-AdamW together with Trion; the
repository address is given on the arXiv page).

The orthonormal DCT-II matrix of size ``n`` (or ``m``) is built once per size; at each subspace update the
``r`` columns ``d_j`` with the largest ``||G d_j||`` are selected and only their indices are stored, so the
projection costs one matmul instead of an SVD and the projector state is ``r`` integers. The rest is
GaLore (see :mod:`gradkit.lowrank.galore`); ``projector="dct"`` also works in FRUGAL. Departure: the
paper's fused/approximate column scoring is done here with one dense matmul.
"""
from __future__ import annotations

from gradkit.lowrank.galore import GaLore
from gradkit.registry import register_optimizer

__all__ = ["SVDFree"]

_REF = ("Modoranu et al., SVD-Free Low-Rank Adaptive Gradient Optimization for Large "
        "Language Models, arXiv:2505.17967 (DCT-AdamW; code linked from the arXiv page)")


@register_optimizer("dct", summary="alias of svdfree", reference=_REF)
@register_optimizer("svdfree", summary="SVD-free GaLore: DCT basis, columns chosen by alignment with the gradient",
                    reference=_REF)
class SVDFree(GaLore):
    """GaLore's arguments; the projection is the DCT column selection (projector state: indices only).

    ``P`` is the ``rank`` columns of the orthonormal DCT-II basis most aligned with the gradient, so no
    SVD is computed and the projector keeps only their indices instead of a dense ``m x r`` matrix.

    Example:
        >>> import torch, gradkit.lowrank
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 2))
        >>> opt = gradkit.lowrank.SVDFree(model.named_parameters(), lr=1e-3, rank=8)
        >>> model(torch.randn(4, 64)).square().mean().backward(); opt.step()
        >>> opt.state_bytes(by="kind")
        {'counter': 0, 'moment': 5648, 'index': 64, 'rng': 0}
    """

    _projector = "dct"
