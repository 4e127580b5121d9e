"""The gradient noise scale: the batch size beyond which larger batches stop paying off.

McCandlish, Kaplan, Amodei & OpenAI Dota Team, "An Empirical Model of Large-Batch Training",
arXiv:1812.06162 (2018); no official code is listed for it. With G the true gradient and Sigma the
per-example gradient covariance, the simple noise scale is

    B_simple = tr(Sigma) / |G|^2.

Two unbiased estimators are offered.

* From two batch sizes (their Appendix A.1): with gradient estimates at batch sizes b < B,
  |G|^2 ~ (B |G_B|^2 - b |G_b|^2) / (B - b)  and  tr(Sigma) ~ (|G_b|^2 - |G_B|^2) / (1/b - 1/B).
  ``two_batch_noise_scale`` splits one batch of size B into B/b chunks, averages |G_b|^2 over the
  chunks (the paper averages over data-parallel workers) and takes G_B as the chunks' mean.
* From per-example gradients (``torch.func.vmap`` over ``torch.func.grad``): with g_i the B
  per-example gradients and g their mean, tr(Sigma) ~ sum |g_i - g|^2 / (B - 1) and
  |G|^2 ~ |g|^2 - tr(Sigma) / B.

Both |G|^2 and tr(Sigma) are unbiased but their ratio is not, and each is noisy; the paper
averages each over many steps (an exponential moving average) before dividing, which is what
``NoiseScaleTracker`` does.

Data split over data-parallel ranks (``process_group``): each rank passes its own share and every
rank gets the estimate for the concatenated batch. The sums both estimators are made of (chunk or
per-example gradients, their squared norms, the counts) are added up over the ranks with one
all-reduce; with one chunk per rank, ``two_batch_noise_scale`` is the paper's data-parallel
estimator (b = the per-rank batch, B = the global batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import distributed
from ._data import LossFn, batch_size, frozen_norm_statistics, select_parameters, sum_over_ranks, training_norm_layers

__all__ = ["NoiseScaleEstimate", "noise_scale_from_norms", "two_batch_noise_scale", "per_example_noise_scale", "NoiseScaleTracker"]


@dataclass
class NoiseScaleEstimate:
    """``gradient_sq_norm`` (estimate of |G|^2), ``trace_covariance`` (of tr Sigma) and their
    ratio ``simple_noise_scale`` (nan when the |G|^2 estimate is not positive)."""

    gradient_sq_norm: float
    trace_covariance: float

    @property
    def simple_noise_scale(self) -> float:
        return self.trace_covariance / self.gradient_sq_norm if self.gradient_sq_norm > 0 else float("nan")


def noise_scale_from_norms(small_sq_norm: float, big_sq_norm: float, small_batch: int, big_batch: int) -> NoiseScaleEstimate:
    """McCandlish et al.'s Appendix A.1 estimators from |G_b|^2 and |G_B|^2 at batch sizes b < B."""
    if not (isinstance(small_batch, int) and isinstance(big_batch, int) and 0 < small_batch < big_batch):
        raise ValueError(f"small_batch and big_batch must be integers with 0 < small_batch < big_batch, got {small_batch}, {big_batch}")
    g2 = (big_batch * big_sq_norm - small_batch * small_sq_norm) / (big_batch - small_batch)
    s = (small_sq_norm - big_sq_norm) / (1.0 / small_batch - 1.0 / big_batch)
    return NoiseScaleEstimate(float(g2), float(s))


def _params(model, params):
    named = select_parameters(model, params)
    return [n for n, _ in named], [p for _, p in named]


def two_batch_noise_scale(model: nn.Module, loss_fn: LossFn, batch, small_batch: int, *, params=None,
                          process_group=None) -> NoiseScaleEstimate:
    """Noise scale from one batch split into chunks of ``small_batch`` examples.

    The batch size must be a multiple of ``small_batch`` with at least two chunks. Batch norm in
    training mode normalises each chunk by its own statistics, as data-parallel training does.
    With ``process_group``, ``batch`` is this rank's share (a multiple of ``small_batch``, at least
    one chunk) and the chunks of all ranks count, as if their shares were one batch.
    """
    group = distributed.resolve_group(process_group)
    inputs, targets = batch
    total = batch_size(inputs)
    least = 1 if group is not None else 2
    if not isinstance(small_batch, int) or small_batch < 1 or total % small_batch or total // small_batch < least:
        where = "this rank's share" if group is not None else "the batch size"
        raise ValueError(f"small_batch must divide {where} ({total}) into at least {least} chunk(s), got {small_batch!r}")
    _, tensors = _params(model, params)
    chunk_grads = []
    with frozen_norm_statistics(model), torch.enable_grad():
        for x, y in zip(inputs.split(small_batch), targets.split(small_batch)):
            grads = torch.autograd.grad(loss_fn(model(x), y), tensors, allow_unused=True)
            chunk_grads.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, tensors)]))
    stacked = torch.stack(chunk_grads)  # (chunks, n)
    grad_sum, (sq_sum, chunks) = sum_over_ranks(stacked.sum(0), [float(stacked.pow(2).sum()), stacked.shape[0]], group)
    if chunks < 2:
        raise ValueError(f"small_batch must split the data of all ranks into at least two chunks, got {int(chunks)}")
    small_sq = sq_sum / chunks
    big_sq = float(grad_sum.div(chunks).pow(2).sum())
    return noise_scale_from_norms(small_sq, big_sq, small_batch, int(round(chunks)) * small_batch)


def per_example_noise_scale(model: nn.Module, loss_fn: LossFn, batch, *, params=None, chunk_size: int | None = None,
                            process_group=None) -> NoiseScaleEstimate:
    """Noise scale from per-example gradients computed with ``vmap(grad)``.

    ``loss_fn`` is called on one example at a time (outputs and targets with a batch dimension of
    one). Per-example gradients are not defined for batch norm in training mode (the batch
    statistics couple the examples), so such a model raises; evaluate it in eval mode or use
    ``two_batch_noise_scale``. ``chunk_size`` bounds how many per-example gradients live at once.
    With ``process_group``, ``batch`` is this rank's share (at least one example) and the estimate
    is for the examples of all ranks together.
    """
    group = distributed.resolve_group(process_group)
    inputs, targets = batch
    total = batch_size(inputs)
    if total < (1 if group is not None else 2):
        raise ValueError(f"batch must hold at least two examples (one per rank with a process_group), got {total}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    norm_layers = training_norm_layers(model)
    if norm_layers:
        raise ValueError(f"per-example gradients are undefined for batch norm in training mode ({', '.join(norm_layers)}); call model.eval() or use two_batch_noise_scale")
    names, tensors = _params(model, params)
    detached = tuple(p.detach() for p in tensors)

    def example_loss(ps, x, y):
        out = torch.func.functional_call(model, dict(zip(names, ps)), (x[None],), strict=False)
        return loss_fn(out, y[None])

    per_example = torch.func.vmap(torch.func.grad(example_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)(detached, inputs, targets)
    # Sum of squared per-example norms and the sum of the gradients, without stacking into (B, n).
    sq_sum = float(sum(g.pow(2).sum() for g in per_example))
    grad_sum = torch.cat([g.sum(0).reshape(-1) for g in per_example])
    grad_sum, (sq_sum, total) = sum_over_ranks(grad_sum, [sq_sum, total], group)
    if total < 2:
        raise ValueError(f"the ranks' batches must hold at least two examples together, got {int(total)}")
    mean_sq = float(grad_sum.div(total).pow(2).sum())
    trace_cov = (sq_sum - total * mean_sq) / (total - 1)
    return NoiseScaleEstimate(mean_sq - trace_cov / total, trace_cov)


class NoiseScaleTracker:
    """Exponential moving averages of |G|^2 and tr(Sigma); their ratio is the smoothed B_simple."""

    def __init__(self, beta: float = 0.9):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta!r}")
        self.beta = beta
        self._g2 = self._s = 0.0
        self._count = 0

    def update(self, estimate: NoiseScaleEstimate) -> float:
        self._count += 1
        self._g2 = self.beta * self._g2 + (1 - self.beta) * estimate.gradient_sq_norm
        self._s = self.beta * self._s + (1 - self.beta) * estimate.trace_covariance
        return self.value

    @property
    def value(self) -> float:
        if self._count == 0:
            return float("nan")
        # Both averages carry the same start-up bias (1 - beta^t), so it cancels in the ratio.
        return self._s / self._g2 if self._g2 > 0 else float("nan")
