"""Subset-Norm (AdamW-SN) and Subset-Norm + Subspace-Momentum (SNSM) recipes.

Nguyen et al., "Efficient Adaptive Optimization via Subset-Norm and Subspace-Momentum: Fast,
Memory-Reduced Training with Convergence Guarantees", 2024 (ICML 2025), arXiv:2411.07120;
official code https://github.com/timmytonga/sn-sm.

AdamW-SN: Adam whose second moment is shared over subsets (:mod:`gradkit.lowrank.subset_norm`).

SNSM, per projected matrix with gradient ``G`` and ``P`` its top-``r`` singular subspace (refreshed every
``update_proj_gap`` steps)::

    d      = sqrt(v_hat[s]) + eps        v: subset-norm second moment of G (one entry per row/column)
    H      = G / d
    m      = b1 m + (1 - b1) P^T H       momentum only in the r-dimensional subspace (m_1 = P^T H)
    p     <- p - lr * (P m + (H - P P^T H))          SGD in the complement; decoupled weight decay

Departure: the subset-norm step size is applied to the gradient before the momentum (so momentum
averages normalised gradients); the official code applies the subset-norm denominator to the momentum
update. Both keep the paper's memory: ``min(m, n)`` second-moment entries and an ``r x max(m, n)``
momentum per matrix. Non-projected parameters get heavy-ball momentum on the normalised gradient.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.transform import chain
from gradkit.lowrank.galore import _check_rank
from gradkit.lowrank.groups import LowRankOptimizer
from gradkit.lowrank.split import project_split
from gradkit.lowrank.subset_norm import scale_by_subset_norm
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate, trace
from gradkit.transforms._checks import betas as check_betas

__all__ = ["SubsetNorm", "SNSM"]

_REF = ("Nguyen et al., Efficient Adaptive Optimization via Subset-Norm and Subspace-Momentum: Fast, "
        "Memory-Reduced Training with Convergence Guarantees, arXiv:2411.07120; https://github.com/timmytonga/sn-sm")


@register_optimizer("subset_norm", summary="AdamW with a subset-norm (row/column-shared) second moment", reference=_REF)
class SubsetNorm(LowRankOptimizer):
    """AdamW-SN. ``betas[0] = 0`` drops the first moment (RMSProp-SN), saving its memory too."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, maximize=False,
                 nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            scale_by_subset_norm(hp("betas"), hp("eps")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, full_state=lambda name, p: True, nonfinite=nonfinite,
                         state_dtype=state_dtype)


@register_optimizer("snsm", summary="subset-norm step sizes with momentum only in a low-rank subspace (SNSM)",
                    reference=_REF)
class SNSM(LowRankOptimizer):
    """SNSM (see the module docstring). ``betas[0]`` is the subspace momentum, ``betas[1]`` the subset norm's."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, rank=128,
                 update_proj_gap=200, state_policy="keep", full_state=None, seed=0, maximize=False,
                 nonfinite="raise", state_dtype=None):
        betas = check_betas(betas, None, "betas")  # split into the momentum and the subset norm's beta below
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, update_proj_gap=update_proj_gap,
                        state_policy=state_policy, seed=seed, maximize=maximize, momentum=betas[0],
                        dampening=betas[0], sn_betas=(0.0, betas[1]))
        transform = chain(
            flip_sign(hp("maximize")),
            scale_by_subset_norm(hp("sn_betas"), hp("eps")),
            project_split(trace(hp("momentum"), hp("dampening"), False), "svd", rank=_check_rank(rank),
                          update_freq=hp("update_proj_gap"), state_policy=hp("state_policy"), complement="sgd",
                          seed=hp("seed")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, full_state=full_state, nonfinite=nonfinite,
                         state_dtype=state_dtype)
