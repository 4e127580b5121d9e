"""Subset-Norm (AdamW-SN) and Subset-Norm + Subspace-Momentum (SNSM) recipes.

Nguyen et al., "Efficient Adaptive Optimization via Subset-Norm and Subspace-Momentum: Fast,
Memory-Reduced Training with Convergence Guarantees", 2024 (ICML 2025), arXiv:2411.07120;
official code https://github.com/timmytonga/sn-sm.

AdamW-SN: Adam whose second moment is shared over subsets (:mod:`gradkit.lowrank.subset_norm`).

SNSM, per projected matrix with gradient ``G`` and ``P`` its top-``r`` singular subspace (refreshed every
``update_proj_gap`` steps; the momentum restarts then, as in the official code)::

    v[s]  = b2 v[s] + (1 - b2) sum_{i in s} G_i^2            subset-norm second moment of the raw gradient
    m     = b1 m + (1 - b1) P^T G                           momentum only in the r-dimensional subspace
    U     = P m_hat + (G - P P^T G)                         plain gradient in the complement
    p    <- p - lr * U / (sqrt(v_hat[s]) + eps)             and decoupled weight decay

Parameters kept state-full (embeddings, head, norms by default) get full momentum with the same
subset-norm step. Departure: the bias correction ``1 / (1 - b1^t)`` multiplies the momentum only (the
official code folds it into the step size, so it also scales the complement), and its step count restarts
with the momentum.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import hp
from gradkit.core.state import FIRST_MOMENT, PER_TENSOR, SECOND_MOMENT, nest, unnest
from gradkit.core.transform import GradientTransform, chain
from gradkit.lowrank.galore import _check_rank
from gradkit.lowrank.groups import LowRankOptimizer
from gradkit.lowrank.split import ProjectedSplit
from gradkit.lowrank.subset_norm import ScaleBySubsetNorm, scale_by_subset_norm, subset_shape
from gradkit.registry import register_optimizer, register_transform
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms._checks import betas as check_betas, positive

__all__ = ["SubsetNorm", "SNSM", "EMAMomentum", "SubsetNormSubspaceMomentum"]

_REF = ("Nguyen et al., Efficient Adaptive Optimization via Subset-Norm and Subspace-Momentum: Fast, "
        "Memory-Reduced Training with Convergence Guarantees, arXiv:2411.07120; https://github.com/timmytonga/sn-sm")


class EMAMomentum(GradientTransform):
    """Bias-corrected exponential moving average: ``m = b1 m + (1 - b1) g``, output ``m / (1 - b1^t)``."""

    name = "ema"
    state_kinds = {"exp_avg": FIRST_MOMENT}

    def __init__(self, betas=hp("betas")):
        self.betas = betas

    def validate(self, group):
        check_betas(self.betas, group, "betas")

    def init(self, params, ctx):
        return {"exp_avg": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}

    def update(self, updates, state, params, ctx):
        b1 = float(ctx.value(self.betas)[0])
        torch._foreach_lerp_(state["exp_avg"], updates, 1.0 - b1)
        return ctx.fresh(torch._foreach_div(state["exp_avg"], [1.0 - b1**s for s in ctx.steps]))


@register_transform("subset_norm_subspace_momentum",
                    summary="subset-norm step size over subspace momentum plus the SGD complement (SNSM)",
                    reference=_REF)
class SubsetNormSubspaceMomentum(GradientTransform):
    """SNSM's direction: subspace momentum (a :class:`ProjectedSplit` with SGD in the complement) divided by
    the subset-norm denominators of the raw gradient. ``betas = (momentum, second-moment)``."""

    name = "snsm"
    kind = PER_TENSOR
    owner_steppable = True  # each tensor's subset sums need that tensor alone (core/redistribute.py)
    state_kinds = {"subset_sq": SECOND_MOMENT}

    def __init__(self, betas=hp("betas"), eps=hp("eps"), *, rank=128, update_freq=hp("update_proj_gap"),
                 state_policy=hp("state_policy"), seed=hp("seed")):
        self.betas = betas
        self.eps = eps
        self.momentum = ProjectedSplit(EMAMomentum(betas), "svd", rank=_check_rank(rank), update_freq=update_freq,
                                       state_policy=state_policy, complement="sgd", seed=seed)

    def children(self):
        return {"sm": self.momentum}

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        positive(self.eps, group, "eps")
        self.momentum.validate(group)

    def init(self, params, ctx):
        state = nest("sm", self.momentum.init(params, ctx))
        state["subset_sq"] = [torch.zeros(subset_shape(p.shape), dtype=p.dtype, device=p.device) for p in params]
        return state

    def estimate_state(self, params, ctx):
        return nest("sm", self.momentum.estimate_state(params, ctx))

    def update(self, updates, state, params, ctx):
        b2 = float(ctx.value(self.betas)[1])
        # the denominators come from the raw gradient, before the momentum reads it
        denom = ScaleBySubsetNorm.denominators(updates, state["subset_sq"], b2, float(ctx.value(self.eps)), ctx.steps)
        own = unnest("sm", state)
        direction = ctx.settle(updates, self.momentum.update(updates, own, params, ctx))
        state.update(nest("sm", own))  # the momentum transform may have replaced state tensors in its lists
        direction = ctx.materialize(direction, params)
        return ctx.fresh(ScaleBySubsetNorm.divide(direction, denom))


@register_optimizer("subset_norm", summary="AdamW with a subset-norm (row/column-shared) second moment", reference=_REF)
class SubsetNorm(LowRankOptimizer):
    """AdamW-SN. ``betas[0] = 0`` drops the first moment (RMSProp-SN), saving its memory too.

    AdamW whose second moment is one value per subset of a matrix's entries (its rows when it has at least
    as many rows as columns, else its columns): ``v[s] <- b2 v[s] + (1 - b2) sum_{i in s} g_i^2``, ``p <- p - lr * m_hat / (sqrt(v_hat[s]) + eps)``.

    Args:
        lr, betas, eps, weight_decay: AdamW's (decoupled decay).
        maximize, nonfinite, state_dtype: as :class:`gradkit.optim.AdamW`.

    Example (AdamW would keep 2 x 4,290 fp32 values here):
        >>> import torch, gradkit.lowrank
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 2))
        >>> opt = gradkit.lowrank.SubsetNorm(model.parameters(), lr=1e-3)
        >>> model(torch.randn(4, 64)).square().mean().backward(); opt.step()
        >>> opt.state_bytes(by="kind")
        {'moment': 17936}
    """

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
    """SNSM (see the module docstring). ``betas[0]`` is the subspace momentum, ``betas[1]`` the subset norm's.

    Args:
        lr, eps, weight_decay: the step size, the denominator's epsilon, decoupled decay.
        betas: ``(b1, b2)``: the subspace momentum and the subset-norm second moment.
        rank, update_proj_gap, full_state, seed: as :class:`gradkit.lowrank.GaLore`.
        state_policy: what the momentum does when the subspace changes (``"reset"``, the official code's).
        maximize, nonfinite, state_dtype: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit.lowrank
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 2))
        >>> opt = gradkit.lowrank.SNSM(model.named_parameters(), lr=1e-3, rank=8)
        >>> model(torch.randn(4, 64)).square().mean().backward(); opt.step()
        >>> opt.state_bytes(by="kind")
        {'counter': 0, 'moment': 3600, 'projection': 2048, 'rng': 0}
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, rank=128,
                 update_proj_gap=200, state_policy="reset", full_state=None, seed=0, maximize=False,
                 nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, update_proj_gap=update_proj_gap,
                        state_policy=state_policy, seed=seed, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            SubsetNormSubspaceMomentum(hp("betas"), hp("eps"), rank=_check_rank(rank)),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, full_state=full_state, nonfinite=nonfinite,
                         state_dtype=state_dtype)
