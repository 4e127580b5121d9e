"""GaLore: Adam in the span of the gradient's top singular vectors, projected back with a scale.

Zhao, Zhang, Chen, Wang, Anandkumar & Tian, "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
Projection", ICML 2024, arXiv:2403.03507; official code https://github.com/jiaweizzhao/GaLore
(package ``galore-torch``).

For each projected matrix ``G`` (``m x n``), with ``P`` the top-``r`` singular vectors on the smaller side,
refreshed every ``update_proj_gap`` steps::

    R = P^T G  (or G Q^T),   N = Adam(R),   p <- p - lr * scale * P N   (and decoupled weight decay)

The Adam moments are kept when the subspace changes (``state_policy="keep"``, as the official code does).
Departures: Adam's ``eps`` is added to the bias-corrected ``sqrt(v_hat)`` (torch.optim's placement; the
official code adds it to ``sqrt(v)``), decoupled weight decay is applied before the update rather than
after, and a matrix whose rank is at least ``min(m, n)`` is updated by plain Adam (its subspace is
everything). Non-matrix parameters, embeddings, head and norms are updated by AdamW (``full_state``).
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.transform import chain
from gradkit.lowrank.groups import LowRankOptimizer
from gradkit.lowrank.split import project_split
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_adam, scale_by_learning_rate

__all__ = ["GaLore", "galore_chain"]


def galore_chain(projector: str, complement: str, rank: int):
    """The GaLore-family chain: Adam on the projected gradient (``project_split`` with the given projector
    and complement rule at ``rank``), decoupled decay and the learning rate, every value read from the
    param group. GaLore, Fira and SVD-free differ only in ``projector`` and ``complement``.

    Example:
        >>> [type(t).__name__ for t in galore_chain("svd", "none", rank=8).transforms]
        ['FlipSign', 'ProjectedSplit', 'AddDecayedWeights', 'ScaleByLearningRate']
    """
    return chain(
        flip_sign(hp("maximize")),
        project_split(scale_by_adam(hp("betas"), hp("eps")), projector, rank=rank,
                      update_freq=hp("update_proj_gap"), state_policy=hp("state_policy"),
                      complement=complement, scale=hp("scale"), limiter=hp("limiter"), seed=hp("seed")),
        add_decayed_weights(hp("weight_decay")),
        scale_by_learning_rate(hp("lr")),
    )


def _check_rank(rank):
    # rank 0 would leave the projected matrices without any update (a silent freeze): refused
    if not (isinstance(rank, int) and not isinstance(rank, bool)):
        raise TypeError(f"rank must be an int >= 1, got {type(rank).__name__} {rank!r}")
    if rank < 1:
        raise ValueError(f"rank must be an int >= 1 (rank 0 would freeze the projected matrices), got {rank!r}")
    return rank


@register_optimizer(
    "galore", summary="GaLore: Adam on the gradient projected onto its top-r singular subspace",
    reference="Zhao, Zhang, Chen, Wang, Anandkumar & Tian, GaLore: Memory-Efficient LLM Training by Gradient "
              "Low-Rank Projection, ICML 2024, arXiv:2403.03507; https://github.com/jiaweizzhao/GaLore")
class GaLore(LowRankOptimizer):
    """GaLore-AdamW: Adam on ``R = P^T G`` with ``P`` the top-``rank`` singular vectors of the gradient,
    refreshed every ``update_proj_gap`` steps; ``p <- p - lr * (scale * P Adam(R) + wd * p)``.

    Args:
        lr, betas, eps, weight_decay, maximize: AdamW's (decoupled decay).
        rank: the subspace size ``r`` (a matrix with ``min(m, n) <= rank`` is updated by plain Adam).
        update_proj_gap: steps between subspace refreshes.
        scale: the factor on the projected-back update (the paper's alpha, 0.25).
        state_policy: what the moments do when the subspace changes: ``"keep"`` (official code),
            ``"reset"`` or ``"project"`` (mapped into the new subspace).
        limiter: Fira's norm-growth bound (unused by GaLore itself).
        full_state: which parameters keep full AdamW state: a regular expression on names (default: vectors,
            embeddings, heads, norms) or a predicate ``(name, param) -> bool``.
        seed: seed of any randomized projector (kept in the state, so a resumed run continues exactly).
        nonfinite, state_dtype: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit.lowrank
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 2))
        >>> opt = gradkit.lowrank.GaLore(model.named_parameters(), lr=1e-3, rank=8)
        >>> model(torch.randn(4, 64)).square().mean().backward(); opt.step()
        >>> opt.state_bytes(by="kind")
        {'counter': 0, 'moment': 5648, 'projection': 2048, 'rng': 0}
    """

    _projector = "svd"
    _complement = "none"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, rank=128,
                 update_proj_gap=200, scale=0.25, state_policy="keep", limiter=1.01, full_state=None, seed=0,
                 maximize=False, nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, update_proj_gap=update_proj_gap,
                        scale=scale, state_policy=state_policy, limiter=limiter, seed=seed, maximize=maximize)
        transform = galore_chain(self._projector, self._complement, _check_rank(rank))
        super().__init__(params, transform, defaults, full_state=full_state, nonfinite=nonfinite,
                         state_dtype=state_dtype)
