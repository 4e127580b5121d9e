"""``Inspector``: curvature, gradient and step-size measurements every N steps of a training loop.

Usage::

    inspector = Inspector(model, F.cross_entropy, probe_batch, every=25, optimizer=opt, log_path="run.jsonl")
    for step, (x, y) in enumerate(loader):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        with inspector.step(step, loss=loss.item()):
            opt.step()
    inspector.plot("plots/")

On a due step (``step % every == 0``) the inspector reads ``.grad`` (minibatch gradient and per-layer
norms) and copies the weights before the optimizer step, measures the Hessian of the loss on the
fixed ``data`` at those weights, and after the step compares the weights. Other steps cost nothing.
It never writes ``.grad``, parameters or batch-norm running statistics, so training runs exactly
as it would without it. Each due step appends one JSON object to ``log_path``.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from torch import nn

from ._data import Data, LossFn, batch_size, is_single_batch, select_parameters
from .hessian import HVP_METHODS, HessianOperator
from .layers import WeightSnapshot, gradient_norms, weight_norms
from .noise import NoiseScaleTracker, two_batch_noise_scale
from .sharpness import SharpnessTracker, stability_threshold
from .subspace import subspace_overlap
from .trace import hutchinson_trace

__all__ = ["Inspector"]


class Inspector:
    """Measure a training run every ``every`` steps and log the numbers as JSON lines.

    Args:
        model, loss_fn: the model and ``loss_fn(outputs, targets)`` (mean over the batch).
        data: the data the Hessian is measured on: one fixed batch or a re-iterable of batches.
        every: measure on steps with ``step % every == 0``.
        optimizer: read ``lr`` (and ``momentum`` if present) from its first param group, for the
            stability threshold; or give ``lr`` (a float or a function of the step) instead.
        log_path: JSON-lines file (truncated when the first record is written); None keeps the
            records in ``self.records`` only.
        top_k: eigenvalues tracked for sharpness (warm-started Lanczos, ``eigen_tol``, at most
            ``max_hvps`` products once warm).
        overlap_k: dimension of the top eigenspace for the gradient overlap (0 to skip); tracked
            with its own warm-started Lanczos at tolerance ``overlap_tol`` and at most
            ``overlap_max_hvps`` products once warm (default ``3 * overlap_k``).
        trace_samples: Hutchinson probes per measurement (0 to skip).
        noise_small_batch: chunk size for the two-batch noise scale on ``data`` (needs ``data`` to be
            one batch whose size it divides; None to skip).
        scale_invariant: parameter names whose effective step size to report (AdamP's quantity);
            every parameter's update ratio is logged regardless.
        params: parameter names to take the Hessian over (default all trainable).
        method: Hessian-vector product method, ``"double_backward"`` or ``"func"``.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Data, *, every: int = 50, optimizer: torch.optim.Optimizer | None = None, lr=None,
                 log_path: str | Path | None = None, top_k: int = 1, overlap_k: int = 0, eigen_tol: float = 1e-3, overlap_tol: float = 1e-2,
                 max_hvps: int = 20, overlap_max_hvps: int | None = None, trace_samples: int = 0, noise_small_batch: int | None = None, scale_invariant: list[str] | None = None,
                 params=None, method: str = "double_backward", seed: int = 0):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        if optimizer is not None and lr is not None:
            raise ValueError("give either optimizer or lr, not both")
        if lr is not None and not (callable(lr) or (isinstance(lr, (int, float)) and lr > 0)):
            raise ValueError(f"lr must be a positive number or a function of the step, got {lr!r}")
        if method not in HVP_METHODS:
            raise ValueError(f"method must be one of {HVP_METHODS}, got {method!r}")
        if not isinstance(overlap_k, int) or overlap_k < 0:
            raise ValueError(f"overlap_k must be a non-negative integer, got {overlap_k!r}")
        if not isinstance(trace_samples, int) or trace_samples < 0 or trace_samples == 1:
            raise ValueError(f"trace_samples must be 0 (off) or an integer >= 2, got {trace_samples!r}")
        if overlap_k and overlap_max_hvps is not None and (not isinstance(overlap_max_hvps, int) or overlap_max_hvps < overlap_k):
            raise ValueError(f"overlap_max_hvps must be an integer >= overlap_k ({overlap_k}), got {overlap_max_hvps!r}")
        if not isinstance(max_hvps, int) or max_hvps < top_k:
            raise ValueError(f"max_hvps must be an integer >= top_k ({top_k}), got {max_hvps!r}")
        if noise_small_batch is not None:
            if not is_single_batch(data):
                raise ValueError("noise_small_batch needs data to be one batch (inputs, targets)")
            total = batch_size(data[0])
            if not isinstance(noise_small_batch, int) or noise_small_batch < 1 or total % noise_small_batch or total // noise_small_batch < 2:
                raise ValueError(f"noise_small_batch must divide the batch size of data ({total}) into at least two chunks, got {noise_small_batch!r}")
        self.model, self.loss_fn, self.data, self.every = model, loss_fn, data, every
        self.optimizer, self.lr = optimizer, lr
        self.params = [n for n, _ in select_parameters(model, params)]
        self.scale_invariant = list(scale_invariant or [])
        unknown = [n for n in self.scale_invariant if n not in self.params]
        if unknown:
            raise ValueError(f"scale_invariant must name parameters in params; unknown: {unknown}")
        self.method, self.trace_samples, self.noise_small_batch = method, trace_samples, noise_small_batch
        self.generator = torch.Generator().manual_seed(seed)
        self.sharpness = SharpnessTracker(top_k, tol=eigen_tol, max_iter=max_hvps, generator=self.generator)
        self.subspace = SharpnessTracker(overlap_k, tol=overlap_tol, max_iter=overlap_max_hvps or 3 * overlap_k, generator=self.generator) if overlap_k else None
        self.noise = NoiseScaleTracker() if noise_small_batch else None
        self.log_path = Path(log_path) if log_path is not None else None
        self._log_started = False
        self.records: list[dict] = []
        self._pending: dict | None = None
        self._snapshot: WeightSnapshot | None = None
        self._initial_norms = weight_norms(model, self.params)

    # ---- the training-loop hooks ---------------------------------------------------------------
    def due(self, step: int) -> bool:
        return step % self.every == 0

    def before_step(self, step: int, **extra) -> None:
        """Call after backward() and before optimizer.step()."""
        if not self.due(step):
            return
        record = {"step": int(step), **{k: _plain(v) for k, v in extra.items()}}
        lr, momentum = self._lr(step)
        if lr is not None:
            record["lr"] = lr
            record["two_over_lr"] = 2.0 / lr
            if momentum:
                record["momentum_threshold"] = stability_threshold(lr, momentum)
        named = select_parameters(self.model, self.params)
        minibatch = None
        if all(p.grad is not None for _, p in named):
            minibatch = torch.cat([p.grad.detach().reshape(-1) for _, p in named])
            record["minibatch_grad_norm"] = float(torch.linalg.vector_norm(minibatch))
        record.update(self.measure(minibatch_gradient=minibatch))
        grad_norms = gradient_norms(self.model, self.params)
        record["layers"] = {n: {"grad_norm": grad_norms.get(n, float("nan"))} for n in self.params}
        self._pending = record
        self._snapshot = WeightSnapshot(self.model, self.params, reference=self._initial_norms)

    def after_step(self, step: int) -> dict | None:
        """Call after optimizer.step(); returns the record written for a due step, else None."""
        if self._pending is None or self._pending["step"] != step:
            return None
        record, self._pending = self._pending, None
        for name, values in self._snapshot.compare().items():
            record["layers"][name].update(values)
        self._snapshot = None
        if self.scale_invariant:
            layers = record["layers"]
            record["effective_step"] = {n: layers[n]["angular_update"] for n in self.scale_invariant}
            record["scale_invariant_norm_growth"] = {n: layers[n]["norm_growth"] for n in self.scale_invariant}
        self._write(record)
        return record

    @contextlib.contextmanager
    def step(self, step: int, **extra):
        """``with inspector.step(step): optimizer.step()`` (``extra`` values are logged as given)."""
        self.before_step(step, **extra)
        yield
        self.after_step(step)

    # ---- measurements --------------------------------------------------------------------------
    def operator(self) -> HessianOperator:
        return HessianOperator(self.model, self.loss_fn, self.data, params=self.params, method=self.method)

    def measure(self, minibatch_gradient: torch.Tensor | None = None) -> dict:
        """Curvature measurements at the current weights (used by ``before_step``; callable alone)."""
        op = self.operator()
        loss, gradient = op.loss_and_gradient()
        out: dict = {"loss": loss, "grad_norm": float(torch.linalg.vector_norm(gradient))}
        eig = self.sharpness.update(op)
        out["top_eigenvalues"] = eig.eigenvalues.tolist()
        out["sharpness_hvps"] = eig.num_hvps
        out["sharpness_converged"] = eig.converged
        if self.subspace is not None:
            sub = self.subspace.update(op)
            out["overlap_k"] = self.subspace.k
            out["overlap_hvps"] = sub.num_hvps
            out["overlap"] = subspace_overlap(gradient, sub.eigenvectors) if out["grad_norm"] > 0 else float("nan")
            if minibatch_gradient is not None and float(minibatch_gradient.norm()) > 0:
                out["minibatch_overlap"] = subspace_overlap(minibatch_gradient.to(gradient.dtype), sub.eigenvectors)
        if self.trace_samples:
            tr = hutchinson_trace(op, self.trace_samples, generator=self.generator)
            out.update(trace=tr.trace, trace_std_error=tr.std_error, trace_interval=list(tr.interval))
        if self.noise is not None:
            est = two_batch_noise_scale(self.model, self.loss_fn, self.data, self.noise_small_batch, params=self.params)
            out.update(noise_scale=est.simple_noise_scale, noise_scale_smoothed=self.noise.update(est))
        out["hvps"] = op.num_hvps
        return out

    def _lr(self, step):
        if self.optimizer is not None:
            group = self.optimizer.param_groups[0]
            momentum = group.get("momentum", 0.0) or 0.0
            return float(group["lr"]), float(momentum)
        if self.lr is None:
            return None, 0.0
        return float(self.lr(step) if callable(self.lr) else self.lr), 0.0

    def _write(self, record: dict) -> None:
        self.records.append(record)
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a" if self._log_started else "w") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")
        self._log_started = True

    def plot(self, out_dir: str | Path, prefix: str = "inspect_", label: str | None = None) -> list[Path]:
        """One PNG per logged quantity (see ``gradkit.inspect.plots.plot_log``)."""
        from .plots import plot_log

        return plot_log(self.records, out_dir, prefix=prefix, label=label)


def _plain(value):
    # A loss passed as a tensor is logged as its number.
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value
