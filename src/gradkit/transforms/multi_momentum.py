"""Multi-momentum variance reduction: one momentum buffer per data cluster, the update their mean.

Tondji, Kashubin & Cisse, "Variance Reduction in Deep Learning: More Momentum is All You Need",
arXiv:2111.11828 (the multi-momentum strategy of Yuan et al., 2019, applied to SGD+momentum and
quasi-hyperbolic momentum; the paper's implementation is in JAX and not packaged).

The data are split into ``K`` clusters (e.g. by k-means on features, or by class); each step's batch
comes from one cluster ``k``, and only that cluster's buffer takes the new gradient::

    m_k <- beta m_k + (1 - beta) g_t                       (the other K - 1 buffers are kept)
    mbar = (1 / K) sum_j m_j
    u_t  = (1 - nu) g_t + nu mbar                          (nu = 1: multi-momentum SGD; nu < 1: QHM)

``mbar`` is a stale-but-complete estimate of the full gradient (every cluster contributes its latest
momentum), which is where the variance reduction comes from; it is kept as a running mean, updated by
``(m_k^new - m_k^old) / K``, so a step touches two buffers whatever ``K`` is.

The cluster of the batch is the param-group hyperparameter ``cluster`` (an int in ``[0, K)``): set it
before ``step`` (``group["cluster"] = k``), or call :class:`gradkit.optim.MultiMomentumSGD`'s
``step(cluster=k)``, which sets it in every group.

Deviations, stated: the buffers are exponential moving averages (``1 - beta`` on the gradient), the
form in which ``nu`` interpolates as in QHM; the paper's IGT variant is not included.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import arg_name, resolve
from gradkit.core.state import FIRST_MOMENT, StateKind
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import unit_interval

__all__ = ["multi_momentum", "MultiMomentum"]

CLUSTER_MOMENTA = StateKind("cluster_momenta", "moment", per_element=False)


def _count(value, group, name, low=0, high=None):
    resolved = resolve(value, group)
    if isinstance(resolved, bool) or not isinstance(resolved, int):
        raise TypeError(f"{arg_name(value, name)} must be an int, got {type(resolved).__name__} {resolved!r}")
    if resolved < low or (high is not None and resolved >= high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ValueError(f"{arg_name(value, name)} must be an int {allowed}, got {resolved!r}")
    return resolved


@register_transform(
    "multi_momentum",
    summary="one momentum buffer per data cluster, the update their mean (multi-momentum variance reduction)",
    reference="Tondji, Kashubin & Cisse, Variance Reduction in Deep Learning: More Momentum is All You Need, "
              "arXiv:2111.11828",
)
class MultiMomentum(GradientTransform):
    """Per-cluster momentum buffers; returns ``(1 - nu) g + nu mean_j m_j``.

    Args:
        clusters: ``K``, the number of data clusters (>= 1; 1 is plain EMA momentum).
        cluster: the cluster of this step's batch, in ``[0, K)`` (usually ``hp("cluster")``).
        beta: the buffers' decay, in [0, 1).
        nu: the weight of the mean buffer, in [0, 1] (1: multi-momentum SGD, < 1: quasi-hyperbolic).

    ``m_k <- beta m_k + (1 - beta) g``; ``u = (1 - nu) g + nu (1/K) sum_j m_j``.
    Reference: Tondji et al., arXiv:2111.11828.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([0.0]))
    >>> t = gradkit.chain(gradkit.multi_momentum(2, gradkit.hp("cluster"), beta=0.0), gradkit.scale(-1.0))
    >>> opt = gradkit.Optimizer([w], t, {"cluster": 0})
    >>> w.grad = torch.tensor([4.0]); opt.step()                     # m_0 = 4, m_1 = 0: mean 2
    >>> opt.param_groups[0]["cluster"] = 1
    >>> w.grad = torch.tensor([2.0]); opt.step(); w.detach()         # m_1 = 2: mean 3
    tensor([-5.])
    """

    name = "multi_momentum"
    fusable = False
    state_kinds = {"cluster_momenta": CLUSTER_MOMENTA, "mean_momentum": FIRST_MOMENT}

    def __init__(self, clusters=1, cluster=0, beta=0.9, nu=1.0):
        self.clusters = clusters
        self.cluster = cluster
        self.beta = beta
        self.nu = nu

    def validate(self, group):
        k = _count(self.clusters, group, "clusters", low=1)
        _count(self.cluster, group, "cluster", low=0, high=k)
        unit_interval(self.beta, group, "beta")
        unit_interval(self.nu, group, "nu", closed_right=True)

    def init(self, params, ctx):
        k = int(ctx.value(self.clusters))
        # the cluster is the last dim, so that the buffers shard with their param's rows (FSDP2's Shard(0))
        # (stacked from zeros_like, which keeps a DTensor's placement: new_zeros would replicate it)
        return {"cluster_momenta": [torch.stack([torch.zeros_like(p)] * k, dim=-1) for p in params],
                "mean_momentum": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}

    def scalars(self, group, step):
        beta, nu = float(resolve(self.beta, group)), float(resolve(self.nu, group))
        return {"one_minus_beta": 1.0 - beta, "inv_k": 1.0 / int(resolve(self.clusters, group)), "nu": nu,
                "one_minus_nu": 1.0 - nu}

    def update(self, updates, state, params, ctx):
        s = ctx.scalars(self)
        k = int(ctx.value(self.cluster))
        buffers = [b[..., k] for b in state["cluster_momenta"]]
        mean = state["mean_momentum"]
        # mean += (m_k^new - m_k^old) / K, with m_k^new - m_k^old = (1 - beta) (g - m_k^old)
        delta = torch._foreach_sub(updates, buffers)
        ctx.ops.mul_(delta, s["one_minus_beta"])
        torch._foreach_add_(buffers, delta)
        torch._foreach_add_(mean, delta, alpha=s["inv_k"])
        if s["nu"] == 1.0:
            return mean
        out = ctx.ops.mul(updates, s["one_minus_nu"])
        torch._foreach_add_(out, mean, alpha=s["nu"])
        return ctx.fresh(out)

    def __repr__(self):
        return (f"MultiMomentum(clusters={self.clusters!r}, cluster={self.cluster!r}, beta={self.beta!r}, "
                f"nu={self.nu!r})")


multi_momentum = MultiMomentum
