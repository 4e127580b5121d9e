"""Fira: GaLore plus the full-rank residual, scaled by the norm-based scaling factor, with a norm-growth limiter.

Chen et al., "Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank
Constraint?", 2024, arXiv:2410.01623; official code https://github.com/xichen-fy/Fira.

With ``R = P^T G`` and ``psi(R)`` the Adam update in the subspace::

    phi_i = ||psi(R)_i|| / ||R_i||                 per row of R (right projection) or column (left)
    S     = phi * (G - P R)                        the residual, scaled row/column-wise
    S    <- S / max(1, ||S|| / (gamma ||S_prev||)) norm-growth limiter (gamma = 1.01); S_prev kept in state
    p    <- p - lr * (scale * P psi(R) + S)

Departures: the residual is ``G - P P^T G`` (the official code subtracts the back-projection after
GaLore's ``scale``, which leaves part of the subspace in the residual when ``scale != 1``); ``phi`` uses
the bias-corrected Adam update, which equals the official uncorrected ratio times the step-size correction
it applies later (up to where ``eps`` enters).
"""
from __future__ import annotations

from gradkit.lowrank.galore import GaLore
from gradkit.registry import register_optimizer

__all__ = ["Fira"]


@register_optimizer(
    "fira", summary="Fira: GaLore plus the norm-scaled full-rank residual with a norm-growth limiter",
    reference="Chen et al., Fira: Can We Achieve Full-rank Training of LLMs Under "
              "Low-rank Constraint?, arXiv:2410.01623; https://github.com/xichen-fy/Fira")
class Fira(GaLore):
    """Fira-AdamW: GaLore's arguments plus ``limiter`` (the norm-growth bound gamma, > 1).

    The complement ``G - P P^T G`` is not dropped but added, scaled by ``|Adam(R)| / |R|`` (the
    projected part's adaptive scaling), with the growth of that scaled residual's norm limited to
    ``limiter`` per step. State: GaLore's plus one norm per matrix.

    Example:
        >>> import torch, gradkit.lowrank
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 2))
        >>> opt = gradkit.lowrank.Fira(model.named_parameters(), lr=1e-3, rank=8)
        >>> model(torch.randn(4, 64)).square().mean().backward(); opt.step()
        >>> opt.state_bytes(by="kind")["norm"]
        4
    """

    _complement = "fira"
