"""Hessian-vector products of a model's loss, averaged exactly over one batch or many.

The Hessian is never formed. Two ways to multiply by it are offered and chosen explicitly:

* ``"double_backward"``: reverse-over-reverse (Pearlmutter, "Fast Exact Multiplication by the
  Hessian", Neural Computation 1994). For a single batch the first backward graph is built once
  and reused, so each product costs one extra backward pass through it. Usually fastest on CPU.
* ``"func"``: forward-over-reverse with ``torch.func.jvp(torch.func.grad(loss))``. It recomputes
  the gradient for every product but keeps no graph alive between products, so it uses less
  memory. On the digits CNN on one CPU core it is about 1.6x slower than the cached double
  backward (``examples/inspect_training.py`` prints both); measure on your hardware before
  switching, which is why the method is an explicit choice rather than picked automatically.

Both compute the same product (the tests compare them). Data given as an iterable of batches is
averaged exactly: each batch's product is weighted by its batch size, which is the product for
the mean loss over all examples when ``loss_fn`` returns the mean over its batch.

Data split over data-parallel ranks: with ``process_group``, each rank passes its own share of the
data and the operator is the Hessian of the mean loss over the data of all ranks. Each rank sums
its examples' products (weighted by batch size, so unequal shares are exact) and one all-reduce of
the vector and the example count gives every rank the same full-data product. Every estimator
built on the operator (Lanczos, power iteration, Hutchinson, spectral density) then runs
identically on all ranks; their random probes go through ``agree``, which makes every rank use the
group's first rank's probe. All ranks must take the same products, in the same order.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .. import distributed
from ._data import (Data, LossFn, batch_size, batches, frozen_norm_statistics, is_single_batch,
                    select_parameters, sum_over_ranks)

__all__ = ["LinearOperator", "MatrixOperator", "HessianOperator", "hessian_vector_product", "as_operator"]

HVP_METHODS = ("double_backward", "func")


class LinearOperator:
    """A symmetric linear map on flat vectors; ``num_hvps`` counts products taken so far."""

    size: int
    dtype: torch.dtype
    device: torch.device
    num_hvps: int = 0

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def __matmul__(self, vector: torch.Tensor) -> torch.Tensor:
        return self.matvec(vector)

    def agree(self, vector: torch.Tensor) -> torch.Tensor:
        """``vector`` made the same in every process the operator spans (in place); estimators pass
        their random probes through it. A single-process operator returns it unchanged."""
        return vector

    def _check_vector(self, vector: torch.Tensor) -> None:
        if not isinstance(vector, torch.Tensor) or vector.shape != (self.size,):
            shape = tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector).__name__
            raise ValueError(f"vector must be a flat tensor of shape ({self.size},), got {shape}")


class MatrixOperator(LinearOperator):
    """An explicit symmetric matrix as an operator (for tests and small problems)."""

    def __init__(self, matrix: torch.Tensor):
        if not isinstance(matrix, torch.Tensor) or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be a square 2-D tensor, got {getattr(matrix, 'shape', type(matrix).__name__)}")
        self.matrix = matrix
        self.size = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device
        self.num_hvps = 0

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        self._check_vector(vector)
        self.num_hvps += 1
        return self.matrix @ vector


def as_operator(operator) -> LinearOperator:
    if isinstance(operator, LinearOperator):
        return operator
    if isinstance(operator, torch.Tensor):
        return MatrixOperator(operator)
    raise TypeError(f"operator must be a LinearOperator (e.g. HessianOperator) or a square tensor, got {type(operator).__name__}")


class HessianOperator(LinearOperator):
    """The Hessian of ``mean loss_fn(model(inputs), targets)`` with respect to ``params``.

    Args:
        model: any ``nn.Module``. Its current train/eval mode is used (batch norm in training
            mode normalises by batch statistics); running statistics are never updated.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, the mean over the batch.
        data: one batch ``(inputs, targets)`` or a re-iterable of such batches (list, DataLoader).
        params: names of the parameters to differentiate (default: all with ``requires_grad``).
        method: ``"double_backward"`` or ``"func"`` (see the module docstring).
        process_group: a ``torch.distributed`` process group whose ranks each hold a share of the
            data: the operator is then the Hessian over all of it (see the module docstring), and
            every rank must call the same methods. None (default) or ``gradkit.distributed.LOCAL``:
            this process's data only, no communication.

    The operator describes the Hessian at the parameter values it sees when a product is taken;
    with a single batch and ``"double_backward"`` it keeps the first backward graph, so build a new
    operator after the parameters change (autograd raises if a cached graph is used after an
    in-place update). Vectors are flat, in the order of ``names``; ``unflatten`` gives the views.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Data, *, params: Iterable[str] | None = None, method: str = "double_backward",
                 process_group=None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets), got {type(loss_fn).__name__}")
        if method not in HVP_METHODS:
            raise ValueError(f"method must be one of {HVP_METHODS}, got {method!r}")
        self.model, self.loss_fn, self.method = model, loss_fn, method
        self.group = distributed.resolve_group(process_group)
        self.single_batch = is_single_batch(data)
        self.data = batches(data)
        named = select_parameters(model, params)
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        dtypes = {p.dtype for p in self.params}
        devices = {p.device for p in self.params}
        if len(dtypes) != 1 or len(devices) != 1:
            raise ValueError(f"params must share one dtype and device, got dtypes {dtypes} and devices {devices}")
        self.dtype, self.device = dtypes.pop(), devices.pop()
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.size = sum(self.numels)
        self.num_hvps = 0
        self._graph = None  # (loss, gradients with graph) for a single batch with double backward

    # ---- flat vectors -------------------------------------------------------------------------
    def flatten(self, tensors) -> torch.Tensor:
        if len(tensors) != len(self.params):
            raise ValueError(f"expected {len(self.params)} tensors (one per parameter), got {len(tensors)}")
        return torch.cat([t.reshape(-1) for t in tensors])

    def unflatten(self, vector: torch.Tensor) -> list[torch.Tensor]:
        return [chunk.view(shape) for chunk, shape in zip(vector.split(self.numels), self.shapes)]

    # ---- the loss -----------------------------------------------------------------------------
    def _loss(self, inputs, targets, params=None) -> torch.Tensor:
        if params is None:
            outputs = self.model(inputs)
        else:
            outputs = torch.func.functional_call(self.model, dict(zip(self.names, params)), (inputs,), strict=False)
        loss = self.loss_fn(outputs, targets)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar tensor (the mean over the batch), got {getattr(loss, 'shape', loss)!r}")
        return loss

    def _cached_graph(self):
        if self._graph is None:
            inputs, targets = self.data[0]
            with frozen_norm_statistics(self.model), torch.enable_grad():
                loss = self._loss(inputs, targets)
                grads = torch.autograd.grad(loss, self.params, create_graph=True)
            self._graph = (loss.detach(), grads)
        return self._graph

    def agree(self, vector: torch.Tensor) -> torch.Tensor:
        return distributed.broadcast_from_first(vector, self.group)

    def loss_and_gradient(self) -> tuple[float, torch.Tensor]:
        """The mean loss and its flat gradient over all the data (no ``.grad`` is written)."""
        if self.single_batch and self.method == "double_backward":
            loss, grads = self._cached_graph()
            if self.group is None:
                return float(loss), self.flatten([g.detach() for g in grads])
            n = batch_size(self.data[0][0])
            total_grad, total_loss, count = self.flatten([g.detach() for g in grads]).mul(n), float(loss) * n, n
        else:
            total_loss, total_grad, count = 0.0, torch.zeros(self.size, dtype=self.dtype, device=self.device), 0
            with frozen_norm_statistics(self.model), torch.enable_grad():
                for inputs, targets in self.data:
                    n = batch_size(inputs)
                    loss = self._loss(inputs, targets)
                    grads = torch.autograd.grad(loss, self.params)
                    total_grad.add_(self.flatten(grads), alpha=n)
                    total_loss += float(loss.detach()) * n
                    count += n
        total_grad, (total_loss, count) = sum_over_ranks(total_grad, [total_loss, count], self.group)
        if count == 0:
            raise ValueError("data must contain at least one non-empty batch")
        return total_loss / count, total_grad.div_(count)

    # ---- products -----------------------------------------------------------------------------
    def _batch_hvp(self, inputs, targets, vector_parts) -> list[torch.Tensor]:
        if self.method == "double_backward":
            loss = self._loss(inputs, targets)
            grads = torch.autograd.grad(loss, self.params, create_graph=True)
            return list(torch.autograd.grad(grads, self.params, grad_outputs=vector_parts, allow_unused=True))
        primals = tuple(p.detach() for p in self.params)

        def gradient(*params):
            return torch.func.grad(lambda ps: self._loss(inputs, targets, ps))(params)

        _, hvp = torch.func.jvp(gradient, primals, tuple(vector_parts))
        return list(hvp)

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        self._check_vector(vector)
        parts = self.unflatten(vector.to(self.dtype))
        self.num_hvps += 1
        if self.single_batch and self.method == "double_backward":
            _, grads = self._cached_graph()
            hv = torch.autograd.grad(grads, self.params, grad_outputs=parts, retain_graph=True, allow_unused=True)
            if self.group is None:
                return self._flatten_products(hv)
            count = batch_size(self.data[0][0])
            total = self._flatten_products(hv).mul_(count)
        else:
            total, count = torch.zeros(self.size, dtype=self.dtype, device=self.device), 0
            with frozen_norm_statistics(self.model), torch.enable_grad():
                for inputs, targets in self.data:
                    n = batch_size(inputs)
                    total.add_(self._flatten_products(self._batch_hvp(inputs, targets, parts)), alpha=n)
                    count += n
        total, (count,) = sum_over_ranks(total, [count], self.group)
        if count == 0:
            raise ValueError("data must contain at least one non-empty batch")
        return total.div_(count)

    def _flatten_products(self, hv) -> torch.Tensor:
        # A parameter the loss does not reach has a zero row and column in the Hessian.
        return self.flatten([torch.zeros_like(p) if h is None else h.detach() for h, p in zip(hv, self.params)])


def hessian_vector_product(model: nn.Module, loss_fn: LossFn, data: Data, vector, *, params: Iterable[str] | None = None, method: str = "double_backward",
                           process_group=None):
    """One Hessian-vector product. ``vector`` is a flat tensor or a list shaped like the parameters;
    the result has the same form. With ``process_group`` (see ``HessianOperator``), ``data`` is this
    rank's share, ``vector`` must be the same on every rank, and the product is over all ranks' data."""
    op = HessianOperator(model, loss_fn, data, params=params, method=method, process_group=process_group)
    if isinstance(vector, torch.Tensor) and vector.ndim == 1:
        return op.matvec(vector)
    if isinstance(vector, (list, tuple)):
        return op.unflatten(op.matvec(op.flatten(vector)))
    raise TypeError(f"vector must be a flat tensor or a list of tensors shaped like the parameters, got {type(vector).__name__}")
