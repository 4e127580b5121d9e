"""DoG: SGD whose step size is the largest distance travelled over the root of the summed squared gradients.

Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size Schedule", ICML 2023,
arXiv:2302.12022; official code https://github.com/formll/dog (package ``dog-optimizer``, class ``DoG``).

One param group is one vector; ``x_0`` is the point of the first step::

    r_0 = reps_rel (1 + ||x_0||),     r_t = max(r_{t-1}, ||x_t - x_0||)      (t >= 1)
    G_0 = ||g_0||^2 + eps,             G_t = G_{t-1} + ||g_t||^2
    eta_t = r_t / sqrt(G_t)           (the update handed on is eta_t g_t; lr multiplies it downstream)

As the official code: the estimates are per param group, ``eps`` is added to the first ``G``, and the
distance is measured before the step (so the first step moves ``lr reps_rel (1 + ||x_0||)``). The
official ``init_eta`` override of the first step size is not provided. Group state: ``r``, ``G``.
"""
from __future__ import annotations

import math

import torch

from gradkit.core.state import ITERATE, PER_TENSOR
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import non_negative, positive
from gradkit.transforms._reduce import dot_sum

__all__ = ["scale_by_dog", "ScaleByDoG"]


@register_transform(
    "scale_by_dog",
    summary="DoG: scale by the largest distance from the initial point over the root of the summed squared gradients",
    reference="Ivgi, Hinder & Carmon, DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size Schedule, "
              "ICML 2023, arXiv:2302.12022; https://github.com/formll/dog",
)
class ScaleByDoG(GradientTransform):
    """DoG's step size (see the module docstring); follow it with ``scale_by_learning_rate``.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([3.0, -4.0]))
    >>> t = gradkit.chain(gradkit.scale_by_dog(reps_rel=0.1), gradkit.scale_by_learning_rate())
    >>> opt = gradkit.Optimizer([w], t, {"lr": 1.0})
    >>> w.grad = torch.tensor([1.0, 0.0]); opt.step(); w.detach()   # moves 0.1 (1 + ||x_0||) = 0.6
    tensor([ 2.4000, -4.0000])
    """

    name = "dog"
    kind = PER_TENSOR
    shard_aware = True  # its group sums over local shards are completed over the mesh (ctx.shards)
    state_kinds = {"x0": ITERATE}
    group_state_keys = ("r", "G")

    def spans_params(self, group):
        return True  # its distance and gradient sums cover the whole group

    def __init__(self, reps_rel=1e-6, eps=1e-8):
        self.reps_rel = reps_rel
        self.eps = eps

    def validate(self, group):
        positive(self.reps_rel, group, "reps_rel")
        non_negative(self.eps, group, "eps")

    def init(self, params, ctx):
        return {"x0": [p.detach().clone(memory_format=torch.preserve_format) for p in params]}

    def update(self, updates, state, params, ctx):
        grads = ctx.materialize(updates, params)
        shards = ctx.shards
        est = ctx.group_state
        x0 = state["x0"]
        moved = x0 if not est else torch._foreach_sub(params, x0)  # ||x_0|| at the start, else ||x_t - x_0||
        distance_sq, grad_sq = torch.stack([dot_sum(moved, moved, shards), dot_sum(grads, grads, shards)]).tolist()
        if not est:
            est.update(r=float(ctx.value(self.reps_rel)) * (1.0 + math.sqrt(distance_sq)), G=float(ctx.value(self.eps)))
        else:
            est["r"] = max(est["r"], math.sqrt(distance_sq))
        est["G"] += grad_sq  # both sums in one host sync
        if est["G"] <= 0.0:  # no gradient yet (and eps = 0): nothing to scale by
            ctx.multiply(0.0)
            return grads
        ctx.multiply(est["r"] / math.sqrt(est["G"]))
        return grads

    def __repr__(self):
        return f"ScaleByDoG(reps_rel={self.reps_rel!r}, eps={self.eps!r})"


scale_by_dog = ScaleByDoG
