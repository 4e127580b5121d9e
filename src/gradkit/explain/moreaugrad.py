"""MoreauGrad: the gradient of the Moreau envelope of the (noise-smoothed) target score, with sparse
and group-sparse variants.

Jinghui Zhang (Jingwei Zhang), Farzan Farnia. "MoreauGrad: Sparse and Robust Interpretation of Neural
Networks via Moreau Envelope", ICCV 2023, arXiv:2302.05294. Official code:
https://github.com/buyeah1109/MoreauGrad.

With ``f`` the target score averaged over Gaussian noise (``f_sigma(x) = E f(x + e)``), the Moreau
envelope ``e_rho f(x) = min_delta f_sigma(x + delta) + ||delta||^2 / (2 rho)`` has the gradient

    MoreauGrad(x) = -delta* / rho,

which tends to the plain gradient as ``rho -> 0`` (and to SmoothGrad's signed average with ``sigma``).
``delta*`` is found by (proximal) gradient descent on ``delta``, with fresh noise every step, and the
last ``average`` iterates are averaged, as in the official code. The sparse variant adds
``eta ||delta||_1`` (soft-thresholding by ``lr * eta`` after each step), the group-sparse variant
``eta sum_g ||delta_g||_2`` over ``group_size x group_size`` spatial blocks of all channels (feature
vectors: runs of ``group_size`` consecutive features). Features whose ``delta`` is thresholded to 0 have
attribution exactly 0. For a linear score ``w . x`` the sparse attribution is the soft-thresholded
gradient ``sign(w) max(|w| - eta, 0)``, so ``eta`` is on the scale of the gradient: the registered
sparse (``eta = 0.5``) and group (``eta = 1``, 2x2 blocks) defaults suit the digits CNN, whose input
gradients average about 0.6 per pixel; scale them with the model's gradients.

Departures from the official code: it returns ``delta`` itself (a map of the opposite sign, scaled by
``rho``); here the paper's ``(x - prox(x)) / rho``. Its noise scale is ``sigma * (max(x) - min(x))``
over the whole batch; here per input (as ``smoothgrad``), which keeps inputs independent. Its step size
is absolute (0.1 with ``rho = 1``); here ``lr`` defaults to ``0.1 * rho``, the same at ``rho = 1`` and
stable for any ``rho``.
"""
from __future__ import annotations

import torch

from gradkit.registry import register_attribution

from ._common import (Model, Target, check_inputs, check_nonnegative, check_positive_int, input_gradient,
                      repeat_target, resolve_target)

__all__ = ["moreaugrad", "sparse_moreaugrad", "group_sparse_moreaugrad", "soft_threshold", "group_soft_threshold"]

_REFERENCE = "Zhang & Farnia, MoreauGrad: Sparse and Robust Interpretation of Neural Networks via Moreau Envelope, ICCV 2023, arXiv:2302.05294; https://github.com/buyeah1109/MoreauGrad"


def soft_threshold(v: torch.Tensor, threshold: float) -> torch.Tensor:
    """The proximal operator of ``threshold * ||.||_1``: ``sign(v) max(|v| - threshold, 0)``."""
    return torch.sign(v) * (v.abs() - threshold).clamp_min(0)


def _grouped(v: torch.Tensor, group_size: int) -> torch.Tensor:
    """``v`` viewed as ``(N, groups, members)``."""
    n = v.shape[0]
    if v.dim() == 4:
        c, h, w = v.shape[1:]
        if h % group_size or w % group_size:
            raise ValueError(f"group_size must divide the image height and width ({h}x{w}), got {group_size}")
        blocks = v.reshape(n, c, h // group_size, group_size, w // group_size, group_size)
        return blocks.permute(0, 2, 4, 1, 3, 5).reshape(n, (h // group_size) * (w // group_size), -1)
    flat = v.reshape(n, -1)
    if flat.shape[1] % group_size:
        raise ValueError(f"group_size must divide the number of features ({flat.shape[1]}), got {group_size}")
    return flat.reshape(n, -1, group_size)


def _ungrouped(g: torch.Tensor, like: torch.Tensor, group_size: int) -> torch.Tensor:
    if like.dim() == 4:
        n, c, h, w = like.shape
        blocks = g.reshape(n, h // group_size, w // group_size, c, group_size, group_size)
        return blocks.permute(0, 3, 1, 4, 2, 5).reshape(like.shape)
    return g.reshape(like.shape)


def group_soft_threshold(v: torch.Tensor, threshold: float, group_size: int) -> torch.Tensor:
    """The proximal operator of ``threshold * sum_g ||v_g||_2``: each group scaled by ``max(1 - t/||v_g||, 0)``."""
    g = _grouped(v, group_size)
    norms = g.norm(dim=2, keepdim=True)
    scale = (1 - threshold / norms.clamp_min(torch.finfo(v.dtype).tiny)).clamp_min(0)
    return _ungrouped(g * scale, v, group_size)


@register_attribution("moreaugrad", summary="gradient of the Moreau envelope of the noise-smoothed target score",
                      reference=_REFERENCE)
def moreaugrad(
    model: Model,
    inputs: torch.Tensor,
    target: Target = None,
    *,
    rho: float = 1.0,
    noise_level: float = 0.1,
    samples: int = 8,
    steps: int = 60,
    lr: float | None = None,
    average: int | None = None,
    sparsity: float = 0.0,
    group_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MoreauGrad ``-delta*/rho`` of the target score, shape of ``inputs`` (signed).

    Args:
        rho: the envelope's smoothing (> 0); smaller is closer to the plain gradient.
        noise_level: Gaussian smoothing sigma as a fraction of each input's value range (0: none).
        samples: noise samples per step. steps: descent steps on ``delta``.
        lr: step size (default ``0.1 * rho``; at most ``rho`` keeps the quadratic term stable).
        average: how many final iterates are averaged (default ``steps // 3``, at least 1).
        sparsity: ``eta`` of the L1 (or group) penalty on ``delta``; 0 is plain MoreauGrad.
        group_size: with ``sparsity``, penalise groups (``group_size`` square blocks, or runs of features).
        generator: random generator of the noise.
    """
    x = check_inputs(inputs)
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not rho > 0:
        raise ValueError(f"rho must be a number > 0, got {rho!r}")
    level = check_nonnegative("noise_level", noise_level)
    check_positive_int("samples", samples)
    check_positive_int("steps", steps)
    eta = check_nonnegative("sparsity", sparsity)
    step = 0.1 * rho if lr is None else lr
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step <= rho:
        raise ValueError(f"lr must be a number in (0, rho={rho}], got {lr!r}")
    last = max(1, steps // 3) if average is None else check_positive_int("average", average)
    if last > steps:
        raise ValueError(f"average must be <= steps ({steps}), got {average}")
    if group_size is not None:
        check_positive_int("group_size", group_size)
        _grouped(x, group_size)  # refuses a size that does not divide the input
    t = resolve_target(model, x, target)
    n, shape = x.shape[0], tuple(x.shape[1:])
    flat = x.flatten(1)
    sigma = (level * (flat.amax(1) - flat.amin(1))).view((n, 1) + (1,) * len(shape))
    targets = repeat_target(t, samples, interleave=True)
    weights = torch.full((n * samples,), 1.0 / samples, dtype=x.dtype, device=x.device)
    delta = torch.zeros_like(x)
    total = torch.zeros_like(x)
    for k in range(steps):
        if level > 0:
            noise = torch.randn((n, samples) + shape, generator=generator, dtype=torch.float32, device=x.device).to(x.dtype) * sigma
            points = (x + delta).unsqueeze(1) + noise
        else:
            points = (x + delta).unsqueeze(1).expand((n, samples) + shape)
        grad = input_gradient(model, points.reshape((n * samples,) + shape), targets, weights)
        grad = grad.view((n, samples) + shape).sum(1)
        delta = delta - step * (grad + delta / rho)
        if eta > 0:
            delta = soft_threshold(delta, step * eta) if group_size is None else group_soft_threshold(delta, step * eta, group_size)
        if k >= steps - last:
            total += delta
    return -(total / last) / rho


@register_attribution("moreaugrad_sparse", summary="MoreauGrad with an L1 penalty: a sparse attribution",
                      reference=_REFERENCE)
def sparse_moreaugrad(model: Model, inputs: torch.Tensor, target: Target = None, *, sparsity: float = 0.5,
                      generator: torch.Generator | None = None, **options) -> torch.Tensor:
    """Sparse MoreauGrad: :func:`moreaugrad` with ``sparsity`` (``eta`` of ``||delta||_1``) on by default."""
    return moreaugrad(model, inputs, target, sparsity=sparsity, generator=generator, **options)


@register_attribution("moreaugrad_group", summary="MoreauGrad with a group-L2 penalty over square blocks",
                      reference=_REFERENCE)
def group_sparse_moreaugrad(model: Model, inputs: torch.Tensor, target: Target = None, *, sparsity: float = 1.0,
                            group_size: int = 2, generator: torch.Generator | None = None, **options) -> torch.Tensor:
    """Group-sparse MoreauGrad: :func:`moreaugrad` with a ``group_size`` block penalty on by default."""
    return moreaugrad(model, inputs, target, sparsity=sparsity, group_size=group_size, generator=generator, **options)
