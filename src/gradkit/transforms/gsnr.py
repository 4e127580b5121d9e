"""Per-tensor learning-rate scales from the gradient signal-to-noise ratio at the first step (SGD-SaI).

Xu, Xiang, Cai & Wen (2024), "No More Adam: Learning Rate Scaling at Initialization
is All You Need", arXiv:2412.11768; official code https://github.com/AnonymousAlethiometer/SGD_SaI.

At a tensor's first step its g-SNR is measured once and frozen::

    gsnr_i = ||g_i||_2 / (std(g_i) + eps)          (std unbiased; a 1-element tensor has std 0)
    scale_i = gsnr_i / max_j gsnr_j                 (normalize=True, official code v1.0.4)

and every later update of tensor ``i`` is multiplied by ``scale_i``. The maximum is taken over the
tensors of the param group that step first together (the official code takes it over all groups at
once; with one group they agree); tensors that take their first step later are divided by that same
stored maximum. ``normalize=False`` keeps the raw g-SNR (official code v1.0.3 and earlier).
``estimator="sqrt_numel"`` replaces the g-SNR by ``sqrt(numel)`` (the approximation of official code
v1.1.0, which also does not normalize). Note that a 1-element tensor gets ``|g| / eps`` (its std is
0), as in the official code; with ``normalize=True`` such a tensor dominates the maximum, so keep
scalar parameters in their own param group.

State: one 0-dim tensor per parameter (the frozen scale) and the maximum in the group state.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import check_hyper, resolve
from gradkit.core.state import PER_TENSOR, SCALE
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean, non_negative

__all__ = ["scale_by_gsnr", "ScaleByGSNR", "gradient_snr", "ESTIMATORS"]

ESTIMATORS = ("gsnr", "sqrt_numel")


def gradient_snr(grads: list[torch.Tensor], eps: float, shards=None, indices: list[int] | None = None) -> torch.Tensor:
    """``||g|| / (std(g) + eps)`` of every tensor, as one 1-D tensor (one pass over all of them).

    ``shards`` (a :class:`~gradkit.core.sharding.Shards`, with the ``indices`` of ``grads`` in it): the
    grads are local shards, and the sums are completed over the mesh (two all-reduces: the sums and
    sums of squares, then the centred sums of squares).

    >>> gradient_snr([torch.tensor([1.0, 3.0]), torch.tensor([2.0])], eps=1.0)
    tensor([1.3099, 2.0000])
    """
    local_numels = torch.tensor([g.numel() for g in grads], device=grads[0].device)
    numels = local_numels if shards is None else torch.tensor(shards.numel(indices), device=grads[0].device)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dtype = flat.dtype
    ids = torch.repeat_interleave(torch.arange(len(grads), device=flat.device), local_numels, output_size=flat.numel())
    count = numels.to(dtype)

    def per_tensor(values):
        return torch.zeros(len(grads), dtype=dtype, device=flat.device).index_add_(0, ids, values)

    if shards is None:
        mean = per_tensor(flat) / count
        norms = torch.stack([n.to(dtype) for n in torch._foreach_norm(grads)])
    else:
        sums, squares = shards.sum(torch.stack([per_tensor(flat), per_tensor(flat * flat)]), indices).unbind(0)
        mean, norms = sums / count, squares.sqrt()
    centered = flat - mean[ids]
    sum_sq = per_tensor(centered * centered)
    if shards is not None:
        sum_sq = shards.sum(sum_sq, indices)
    std = torch.sqrt(sum_sq / (count - 1)).nan_to_num_(0.0)  # unbiased, like Tensor.std(); 1 element -> 0
    return norms / (std + eps)


@register_transform(
    "scale_by_gsnr",
    summary="freeze a per-tensor scale at the first step from the gradient signal-to-noise ratio (SGD-SaI)",
    reference="Xu, Xiang, Cai & Wen, No More Adam: Learning Rate Scaling at Initialization is All You Need, arXiv:2412.11768; "
              "https://github.com/AnonymousAlethiometer/SGD_SaI",
)
class ScaleByGSNR(GradientTransform):
    """Multiply each tensor's updates by a scale frozen at its first step from its gradient's SNR (SGD-SaI).

    Args:
        eps: added to the standard deviation.
        normalize: divide by the group's largest g-SNR (official code v1.0.4).
        estimator: "gsnr" or "sqrt_numel" (v1.1.0's approximation).

    ``scale_i = gsnr_i / max_j gsnr_j``, ``gsnr_i = ||g_i|| / (std(g_i) + eps)``. Reference: Xu et al.,
    arXiv:2412.11768; https://github.com/AnonymousAlethiometer/SGD_SaI.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.zeros(4))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_gsnr(normalize=False), gradkit.scale(-1.0)))
    >>> w.grad = torch.tensor([1.0, 1.0, 1.0, 1.0]); opt.step()  # std 0: the scale is ||g|| / eps
    >>> opt.state[w]["gsnr.scale"].item()
    200000000.0
    """

    name = "gsnr"
    kind = PER_TENSOR
    shard_aware = True  # the g-SNR's sums are completed over the mesh (ctx.shards)
    group_state_keys = ("max_gsnr",)
    state_kinds = {"scale": SCALE}

    def __init__(self, eps=1e-8, normalize=True, estimator="gsnr"):
        self.eps = eps
        self.normalize = normalize
        self.estimator = estimator

    def spans_params(self, group):
        return bool(resolve(self.normalize, group))  # the group's largest g-SNR

    def validate(self, group):
        non_negative(self.eps, group, "eps")
        boolean(self.normalize, group, "normalize")
        check_hyper(self.estimator, group, "estimator", lambda x: x in ESTIMATORS, f"one of {ESTIMATORS}")

    def init(self, params, ctx):
        return {"scale": [torch.zeros((), dtype=p.dtype, device=p.device) for p in params]}

    def update(self, updates, state, params, ctx):
        scales = state["scale"]
        first = list(range(len(updates))) if ctx.step == 1 else [i for i, s in enumerate(ctx.steps) if s == 1]
        if first:
            self._measure([updates[i] for i in first], [scales[i] for i in first], ctx, first)
        if ctx.owned:
            torch._foreach_mul_(updates, scales)
            return updates
        return ctx.fresh(torch._foreach_mul(updates, scales))  # one pass, where copy-then-scale takes two

    def _measure(self, grads, scales, ctx, indices):
        if ctx.value(self.estimator) == "gsnr":
            snr = gradient_snr(grads, float(ctx.value(self.eps)), ctx.shards, indices)
        else:
            numels = [g.numel() for g in grads] if ctx.shards is None else ctx.shards.numel(indices)
            snr = torch.tensor([float(n) ** 0.5 for n in numels], device=grads[0].device)
        if ctx.value(self.normalize):
            group_state = ctx.group_state
            if "max_gsnr" not in group_state:
                group_state["max_gsnr"] = snr.max().float()
            snr = snr / group_state["max_gsnr"].to(snr.device)
        torch._foreach_copy_(scales, list(snr.unbind()))


scale_by_gsnr = ScaleByGSNR
