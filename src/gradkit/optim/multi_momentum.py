"""Multi-momentum SGD / QHM: variance reduction with one momentum buffer per data cluster.

Tondji, Kashubin & Cisse, "Variance Reduction in Deep Learning: More Momentum is All You Need",
arXiv:2111.11828 (multi-momentum strategy of Yuan et al., 2019).

    g <- -g if maximize;   g <- g + wd * p
    m_k <- beta m_k + (1 - beta) g        (k: the cluster of this step's batch)
    u <- (1 - nu) g + nu (1/K) sum_j m_j  (nu = 1: SGD+multi-momentum; nu < 1: QHM form)
    p <- p - lr u

The transform and its deviations are in :mod:`gradkit.transforms.multi_momentum`.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.multi_momentum import multi_momentum

__all__ = ["MultiMomentumSGD"]


@register_optimizer("multi_momentum_sgd",
                    summary="SGD/QHM with one momentum buffer per data cluster, stepping on their mean",
                    reference="Tondji, Kashubin & Cisse, Variance Reduction in Deep Learning: More Momentum is All "
                              "You Need, arXiv:2111.11828")
class MultiMomentumSGD(Optimizer):
    """SGD with multi-momentum variance reduction over ``clusters`` data clusters.

    Args:
        lr: learning rate.
        clusters: number of data clusters ``K`` (the default 1 is plain EMA momentum).
        beta: decay of each cluster's buffer, in [0, 1).
        nu: weight of the mean buffer against the gradient, in [0, 1] (QHM's ``nu``).
        weight_decay: coupled L2.
        maximize, nonfinite, state_dtype: as :class:`gradkit.optim.AdamW`.

    Pass the batch's cluster to ``step(cluster=k)`` (or set ``group["cluster"]``; it stays until changed).

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = gradkit.optim.MultiMomentumSGD([w], lr=0.5, clusters=2, beta=0.0)
        >>> w.grad = torch.tensor([2.0]); opt.step(cluster=1)   # mean of (0, 2) = 1
        >>> w.detach()
        tensor([0.5000])
    """

    def __init__(self, params, lr=1e-2, clusters=1, beta=0.9, nu=1.0, weight_decay=0.0, *, maximize=False,
                 nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, clusters=clusters, cluster=0, beta=beta, nu=nu, weight_decay=weight_decay,
                        maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            add_decayed_weights(hp("weight_decay")),
            multi_momentum(hp("clusters"), hp("cluster"), hp("beta"), hp("nu")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)

    def step(self, closure=None, *, cluster=None):
        """One step; ``cluster`` (an int in ``[0, clusters)``) sets every group's cluster first."""
        if cluster is not None:
            if isinstance(cluster, bool) or not isinstance(cluster, int):
                raise TypeError(f"cluster must be an int, got {type(cluster).__name__} {cluster!r}")
            for group in self.param_groups:
                if not 0 <= cluster < group["clusters"]:
                    raise ValueError(f"cluster must be in [0, {group['clusters']}) (clusters), got {cluster}")
            for group in self.param_groups:
                group["cluster"] = cluster
        return super().step(closure)
