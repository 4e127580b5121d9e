"""I-GOS: a low-resolution deletion mask optimised with integrated-gradient descent directions.

Zhongang Qi, Saeed Khorram, Li Fuxin. "Visualizing Deep Networks by Optimizing with Integrated
Gradients". AAAI 2020, arXiv:1905.00954. Official code: https://github.com/zhongangqi/IGOS and its
maintained successor https://github.com/khorrams/IGOS_pp (``methods.py``, ``methods_helper.py``).

A mask ``M`` in [0, 1] of size ``mask_size`` (1 keeps the image, 0 shows the baseline) is upsampled
to the input, ``up(M)``, and composed as ``phi(x, b, m) = x * m + b * (1 - m)``. Starting from
``M = 1`` it minimises, per image,

    L(M) = 1/K sum_{k=1..K} f_t(phi(x, b, (k/K) up(M)) + e_k)        (integrated deletion score)
           + l1 * mean|1 - M| + tv * TV_beta(M)

where ``f_t`` is the softmax probability of the target class, ``e_k ~ N(0, noise^2)`` and
``TV_beta(M) = mean|M[i+1, j] - M[i, j]|^beta + mean|M[i, j+1] - M[i, j]|^beta``. The descent
direction is the gradient of ``L``, whose score part is the integrated gradient of the score along
the straight path from the baseline to the masked image. Each iteration takes a backtracking
(Armijo) line search per image: the step starts at ``step_size`` and is multiplied by
``decay`` until ``L(clip(M - a g)) <= L(M) - a * armijo * |g|^2`` or ``a < min_step``; then
``M <- clip(M - a g, 0, 1)``. The defaults are those of the official code (K = 15, 20 iterations,
l1 = 1, tv = 20, beta = 2, step 8, armijo 1e-4, decay 0.2, min step 1e-5, noise 0.2).

Departures from the official code, none of which changes the objective or the update:

* the whole batch and all K path points go through one forward/backward pass (the official code
  loops over images for the backward pass);
* the baseline is an argument (default zeros); the official script uses a heavily blurred copy of
  the image, which callers can pass;
* the default mask size is ``min(28, H) x min(28, W)`` (the official 28 x 28 at 224 x 224), any
  ``(h, w)`` is accepted; for tiny inputs such as 8 x 8 digits the mask can have full resolution;
* ``softmax=False`` scores the raw target logit (the official code's alternative is a sigmoid);
* the returned attribution is ``1 - up(M)`` (high = important), expanded to the input's shape; the
  mask itself comes back with ``return_mask=True``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gradkit.registry import register_attribution

from ._common import Model, Target, as_baseline, check_inputs, check_nonnegative, check_positive_int, check_target_range, resolve_target

__all__ = ["igos"]


def _upsample(mask: torch.Tensor, size) -> torch.Tensor:
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask, size=size, mode="bilinear", align_corners=True)


def _total_variation(mask: torch.Tensor, beta: float) -> torch.Tensor:
    m = mask[:, 0]
    dh = (m[:, 1:, :] - m[:, :-1, :]).abs().pow(beta).flatten(1)
    dw = (m[:, :, 1:] - m[:, :, :-1]).abs().pow(beta).flatten(1)
    zero = m.new_zeros(m.shape[0])
    return (dh.mean(1) if dh.shape[1] else zero) + (dw.mean(1) if dw.shape[1] else zero)


@register_attribution("igos", summary="a deletion mask optimised along integrated-gradient directions",
                      reference="Qi et al., Visualizing Deep Networks by Optimizing with Integrated Gradients, AAAI 2020, arXiv:1905.00954; https://github.com/khorrams/IGOS_pp")
def igos(
    model: Model,
    inputs: torch.Tensor,
    target: Target = None,
    *,
    baselines=None,
    mask_size: int | tuple[int, int] | None = None,
    iterations: int = 20,
    ig_steps: int = 15,
    l1: float = 1.0,
    tv: float = 20.0,
    tv_beta: float = 2.0,
    step_size: float = 8.0,
    armijo: float = 1e-4,
    decay: float = 0.2,
    min_step: float = 1e-5,
    noise: float = 0.2,
    softmax: bool = True,
    generator: torch.Generator | None = None,
    return_mask: bool = False,
):
    """I-GOS attributions ``1 - up(M)`` for image inputs ``(N, C, H, W)``; see the module docstring.

    ``softmax=False`` uses the raw target logit instead of its probability.
    """
    x = check_inputs(inputs)
    if x.dim() != 4:
        raise ValueError(f"igos needs image inputs (N, C, H, W), got shape {tuple(x.shape)}")
    n, _, height, width = x.shape
    if mask_size is None:
        mask_size = (min(28, height), min(28, width))
    elif isinstance(mask_size, int) and not isinstance(mask_size, bool):
        mask_size = (mask_size, mask_size)
    if not (isinstance(mask_size, (tuple, list)) and len(mask_size) == 2 and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in mask_size)):
        raise ValueError(f"mask_size must be a positive int or a pair (h, w) of positive ints, got {mask_size!r}")
    check_positive_int("iterations", iterations, 0)
    check_positive_int("ig_steps", ig_steps)
    for name, value in (("l1", l1), ("tv", tv), ("tv_beta", tv_beta), ("armijo", armijo), ("noise", noise), ("min_step", min_step)):
        check_nonnegative(name, value)
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}")
    if not 0 < decay < 1:
        raise ValueError(f"decay must be in (0, 1), got {decay!r}")
    b = as_baseline(baselines, x).expand_as(x)
    t = resolve_target(model, x, target)
    if t is None:
        raise ValueError("igos needs a classifier returning (N, classes) scores")
    size = (height, width)
    alphas = torch.arange(1, ig_steps + 1, dtype=x.dtype, device=x.device).div_(ig_steps).view(-1, 1, 1, 1, 1)

    def deletion_score(masks: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The integrated deletion score of ``masks`` (one per selected row), shape (rows,)."""
        m = alphas * _upsample(masks, size).unsqueeze(0)  # (K, R, 1, H, W)
        xs, bs = x[rows].unsqueeze(0), b[rows].unsqueeze(0)
        points = bs + m * (xs - bs)
        if noise > 0:
            points = points + noise * torch.randn(points.shape, generator=generator, dtype=x.dtype, device=x.device)
        out = model(points.reshape((-1,) + tuple(x.shape[1:])))
        if softmax:
            out = out.softmax(dim=1)
        check_target_range(t, out.shape[1])
        scores = out.gather(1, t[rows].repeat(ig_steps).view(-1, 1)).view(ig_steps, -1)
        return scores.mean(0)

    def loss(masks: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        reg = l1 * (1 - masks).abs().flatten(1).mean(1) + tv * _total_variation(masks, tv_beta)
        return deletion_score(masks, rows) + reg

    every = torch.arange(n, device=x.device)
    mask = torch.ones((n, 1) + tuple(mask_size), dtype=x.dtype, device=x.device)
    for _ in range(iterations):
        with torch.enable_grad():
            leaf = mask.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(loss(leaf, every).sum(), leaf)
        with torch.no_grad():
            steps = _line_search(mask, grad, loss, step_size, armijo, decay, min_step)
            mask = (mask - steps.view(-1, 1, 1, 1) * grad).clamp_(0, 1)
    attributions = (1 - _upsample(mask, size)).expand_as(x).contiguous()
    return (attributions, mask) if return_mask else attributions


@torch.no_grad()
def _line_search(mask, grad, loss, step_size, armijo, decay, min_step) -> torch.Tensor:
    """Per-image backtracking: the largest ``step_size * decay^j`` meeting the Armijo condition."""
    n = mask.shape[0]
    steps = torch.full((n,), float(step_size), dtype=mask.dtype, device=mask.device)
    rows = torch.arange(n, device=mask.device)
    base = loss(mask, rows)
    slope = -armijo * grad.flatten(1).pow(2).sum(1)
    active = torch.ones(n, dtype=torch.bool, device=mask.device)
    while True:
        idx = rows[active]
        trial = (mask[idx] - steps[idx].view(-1, 1, 1, 1) * grad[idx]).clamp(0, 1)
        unmet = loss(trial, idx) > base[idx] + steps[idx] * slope[idx]
        active[idx] = unmet & (steps[idx] >= min_step)
        if not active.any():
            return steps
        steps[active] *= decay
