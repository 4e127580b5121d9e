"""Projectors: how a gradient is split into a low-dimensional, state-full part and its complement.

A projector is one small interface used per parameter (a matrix ``G`` of shape ``m x n``; higher-order
tensors are viewed as ``shape[0] x rest``):

* ``state(p, size)``: the tensors the projector keeps (allocated only; meta-safe);
* ``fit(grad, state, generator)``: choose a new subspace from a gradient, writing into ``state``;
* ``project(grad, state)`` -> the low-dimensional coordinates; ``back(low, state)`` -> a full-shape tensor;
  ``back_factors_many`` -> ``back`` as two matrix factors, for projectors whose ``back`` is a matrix product
  (the optimizer then adds it into the parameter inside the multiply, with no full-size tensor);
* ``transition(old, new)``: the matrix mapping coordinates in the old subspace to the new one (``None``
  when the projector maps state by projecting back and forth instead);
* ``materialize(states)``: the states one step works from (the stored ones, or the basis rebuilt from a
  stored seed, ``"random_seeded"``).

``size`` is the subspace size: the rank ``r`` for matrix projectors (the basis is taken on the smaller
side, as GaLore does: ``m >= n`` projects from the right, ``G Q^T`` with ``Q`` of shape ``r x n``; otherwise
from the left, ``P^T G`` with ``P`` of shape ``m x r``) and the number of coordinates ``k`` for RandK.

Projectors whose basis is orthonormal (all of these) satisfy ``back(project(G)) = P P^T G``, the orthogonal
projection, so ``G - back(project(G))`` is the complement that FRUGAL and Fira update without state.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from gradkit.core.ops import FOREACH
from gradkit.registry import PROJECTORS, suggestion

__all__ = ["Projector", "SVDProjector", "RandomProjector", "SeededRandomProjector", "RandKProjector", "DCTProjector",
           "BlockProjector", "PROJECTORS", "get_projector", "dct_basis"]


def as_matrix(t: Tensor) -> Tensor:
    return t if t.dim() == 2 else t.reshape(t.shape[0], -1)


def matrix_shape(shape) -> tuple[int, int]:
    shape = tuple(shape)
    return (shape[0], math.prod(shape[1:])) if len(shape) >= 2 else (1, shape[0] if shape else 1)


def norms_over(x: Tensor, dim: int) -> Tensor:
    """The 2-norms of ``x`` along ``dim``. Over a dimension that is not the innermost, the sum of squares: on
    the CPU ``vector_norm`` reduces across strides there 6-17x slower (a 1024 x 384 float32 matrix over dim 0:
    380 against 60 us, one thread).

    >>> norms_over(torch.tensor([[3.0, 0.0], [4.0, 1.0]]), 0)
    tensor([5., 1.])
    """
    if dim in (-1, x.dim() - 1):
        return torch.linalg.vector_norm(x, dim=dim)
    return x.square().sum(dim=dim).sqrt_()


def stacked(tensors: list[Tensor]) -> Tensor:
    """A batch of same-shape tensors (a view, not a copy, when there is only one)."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


class Projector:
    """Base class; see the module docstring for the protocol."""

    name = "projector"
    #: True when the whole parameter is either state-full or state-free (blockwise); no per-matrix basis.
    whole_params = False
    #: which parameters it can project: "matrix" (ndim >= 2) or "any"
    applies_to = "matrix"
    state_kinds: dict[str, str] = {}

    def eligible(self, p: Tensor) -> bool:
        return p.dim() >= 2 if self.applies_to == "matrix" else p.numel() > 0

    def full_size(self, shape) -> int:
        """The subspace size at which the subspace is the whole space."""
        return min(matrix_shape(shape))

    def low_shape(self, shape, size: int) -> tuple[int, ...]:
        m, n = matrix_shape(shape)
        return (m, size) if m >= n else (size, n)

    def state(self, p: Tensor, size: int) -> dict[str, Tensor]:
        raise NotImplementedError

    def fit(self, grad: Tensor, state: dict[str, Tensor], generator: torch.Generator | None) -> None:
        raise NotImplementedError

    def project(self, grad: Tensor, state: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def back(self, low: Tensor, state: dict[str, Tensor], shape) -> Tensor:
        raise NotImplementedError

    def transition(self, old: dict[str, Tensor], new: dict[str, Tensor]) -> Tensor | None:
        return None

    def materialize(self, states: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        """The states ``project``/``back`` work from during one step: the stored ones, or (for a projector
        that stores only how to rebuild its basis) new ones holding the basis, dropped after the step."""
        return states

    # multi-tensor forms: one call for all parameters of a group (projectors may batch them)
    def project_many(self, grads: list[Tensor], states: list[dict[str, Tensor]]) -> list[Tensor]:
        return [self.project(g, st) for g, st in zip(grads, states)]

    def back_many(self, lows: list[Tensor], states: list[dict[str, Tensor]], shapes: list, *, scale: float = 1.0,
                  add: list[Tensor] | None = None, into_add: bool = False) -> list[Tensor]:
        """``add[j] + scale * back(lows[j])`` for every j (``add`` None: no addend); new tensors, or with
        ``into_add`` the tensors of ``add`` themselves, written in place (no full-size temporary)."""
        out = [self.back(low, st, shape) for low, st, shape in zip(lows, states, shapes)]
        if out and scale != 1.0:
            torch._foreach_mul_(out, scale)
        if out and add is not None:
            if into_add:
                torch._foreach_add_(add, out)
                return list(add)
            torch._foreach_add_(out, add)
        return out

    def back_factors_many(self, lows: list[Tensor], states: list[dict[str, Tensor]],
                          shapes: list) -> list[tuple[Tensor, Tensor]] | None:
        """Matrices ``(left, right)`` with ``back(lows[j]) == (left @ right).reshape(shapes[j])``, or ``None``
        where ``back`` is not a matrix product (coordinate selections)."""
        return None

    def complement_many(self, grads: list[Tensor], lows: list[Tensor], states: list[dict[str, Tensor]]) -> list[Tensor]:
        """``grads[j] - back(lows[j])``: the part of each gradient outside its subspace; new tensors."""
        restored = self.back_many(lows, states, [g.shape for g in grads])
        return torch._foreach_sub(grads, restored)

    def fit_many(self, grads: list[Tensor], states: list[dict[str, Tensor]], generators: list, *,
                 sign_free: bool = False) -> None:
        """``fit`` for several parameters at once (projectors may batch same-shape matrices). ``sign_free``:
        the caller's result does not depend on the signs of the basis vectors (only on the subspace and the
        directions), so a projector may take a cheaper route to the same subspace."""
        for g, st, gen in zip(grads, states, generators):
            self.fit(g, st, gen)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def same_shape_batches(tensors, shapes):
    """The indices of ``tensors`` grouped by (``shapes[j]``, tensor shape, dtype, device): what one batched
    call (or one stack) can take together."""
    groups: dict = {}
    for j, (t, shape) in enumerate(zip(tensors, shapes)):
        groups.setdefault((tuple(shape), tuple(t.shape), t.dtype, t.device), []).append(j)
    return groups.values()


def stacking_batches(tensors, shapes):
    """:func:`same_shape_batches` off the CPU; on the CPU each tensor alone (its batch a view, no copy), as a
    batched CPU call loops over the matrices anyway, after copying them into one stack."""
    if tensors and tensors[0].device.type == "cpu":
        return [[j] for j in range(len(tensors))]
    return same_shape_batches(tensors, shapes)


class _MatrixProjector(Projector):
    """A projector given by a semi-orthogonal matrix stored in state (``"matrix"``)."""

    state_kinds = {"matrix": "projection"}

    def state(self, p, size):
        m, n = matrix_shape(p.shape)
        shape = (size, n) if m >= n else (m, size)
        return {"matrix": torch.zeros(shape, dtype=p.dtype, device=p.device)}

    def basis(self, state: dict[str, Tensor]) -> Tensor:
        return state["matrix"]

    def project(self, grad, state):
        g, q = as_matrix(grad), self.basis(state)
        right = g.shape[0] >= g.shape[1]
        return g @ q.T if right else q.T @ g

    def oriented_basis(self, state: dict[str, Tensor], shape, dtype: torch.dtype) -> Tensor:
        """The basis as ``back`` multiplies by it: ``r x n`` (right projection) or ``m x r`` (left)."""
        return self.basis(state)

    def back(self, low, state, shape):
        q = self.oriented_basis(state, shape, low.dtype)
        m, n = matrix_shape(shape)
        full = low @ q if m >= n else q @ low
        return full.reshape(shape)

    # The scale and the addend of back_many and the subtraction of complement_many ride in the matmul
    # itself (addmm/baddbmm), so no full-size temporary is made for them. On accelerators, parameters of
    # the same shape go through one batched call (one launch per shape); on the CPU, where a call costs
    # little and stacking would copy every gradient, each matrix takes its own addmm (stack + bmm measured
    # slower than per-matrix calls on TinyLM's d=128 matrices, one CPU thread).
    @staticmethod
    def _products(left, right, scale=1.0, addends=None, into=False):
        """``addends[j] + scale * left[j] @ right[j]`` for every j (``addends`` None: no addend); with ``into``
        written into the addends in place. Without addends, ``scale`` multiplies the smaller factor."""
        cpu = left[0].device.type == "cpu" or len(left) == 1
        if addends is None:
            if scale != 1.0:  # scale the small (r-sized) factor instead of the full-size product
                if left[0].numel() <= right[0].numel():
                    left = FOREACH.mul(left, scale)
                else:
                    right = FOREACH.mul(right, scale)
            if cpu:
                return [a @ b for a, b in zip(left, right)]
            return list(torch.bmm(torch.stack(left), torch.stack(right)).unbind(0))
        if into:  # one in-place GEMM per matrix (beta = 1): no full-size temporary, no copy
            for a, b, c in zip(left, right, addends):
                c.addmm_(a, b, alpha=scale)
            return list(addends)
        if cpu:
            return [torch.addmm(c, a, b, alpha=scale) for a, b, c in zip(left, right, addends)]
        full = torch.baddbmm(torch.stack(addends), torch.stack(left), torch.stack(right), alpha=scale)
        return list(full.unbind(0))

    def project_many(self, grads, states):
        out: list = [None] * len(grads)
        for idx in same_shape_batches(grads, [g.shape for g in grads]):
            g = [as_matrix(grads[j]) for j in idx]
            q = [self.basis(states[j]) for j in idx]
            right = g[0].shape[0] >= g[0].shape[1]
            lows = self._products(g, [x.T for x in q]) if right else self._products([x.T for x in q], g)
            for j, value in zip(idx, lows):
                out[j] = value
        return out

    def _back_batched(self, lows, states, shapes, scale, addends, into=False):
        out: list = [None] * len(lows)
        for idx in same_shape_batches(lows, shapes):
            shape = tuple(shapes[idx[0]])
            m, n = matrix_shape(shape)
            low = [lows[j] for j in idx]
            q = [self.basis(states[j]) for j in idx]
            base = None if addends is None else [as_matrix(addends[j]) for j in idx]
            full = (self._products(low, q, scale, base, into) if m >= n else
                    self._products(q, low, scale, base, into))
            for j, value in zip(idx, full):
                out[j] = value.reshape(shape)
        return out

    def back_many(self, lows, states, shapes, *, scale=1.0, add=None, into_add=False):
        return self._back_batched(lows, states, shapes, scale, add, into_add and add is not None)

    def back_factors_many(self, lows, states, shapes):
        out = []
        for low, state, shape in zip(lows, states, shapes):
            m, n = matrix_shape(shape)
            q = self.oriented_basis(state, shape, low.dtype)
            out.append((low, q) if m >= n else (q, low))
        return out

    def complement_many(self, grads, lows, states):
        return self._back_batched(lows, states, [g.shape for g in grads], -1.0, grads)

    def fit_many(self, grads, states, generators, *, sign_free=False):
        # (an SVD refresh of TinyLM d=384's matrices from one stack measured 2.5% slower on the CPU)
        for idx in stacking_batches(grads, [g.shape for g in grads]):
            self._fit_batch([grads[j] for j in idx], [states[j] for j in idx], [generators[j] for j in idx],
                            sign_free=sign_free)

    def _fit_batch(self, grads, states, generators, sign_free=False):
        for g, st, gen in zip(grads, states, generators):
            self.fit(g, st, gen)

    def transition(self, old, new):
        q_old, q_new = self.basis(old), self.basis(new)
        # right: coordinates are rows of G Q^T, so new = old (Q_new Q_old^T)^T; left: new = (P_new^T P_old) old
        if q_old.shape[0] < q_old.shape[1]:
            return q_new @ q_old.T
        return q_new.T @ q_old


class SVDProjector(_MatrixProjector):
    """Top-``r`` singular vectors of the gradient (GaLore's projection).

    Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection", ICML 2024,
    arXiv:2403.03507; https://github.com/jiaweizzhao/GaLore.

    ``fit`` takes them from ``torch.linalg.svd`` (the official code's choice, signs included). When the caller
    says the signs do not matter (``fit_many(..., sign_free=True)``: the inner state is reset or mapped at a
    subspace change, as FRUGAL does), they are the top eigenvectors of the smaller Gram matrix ``G^T G`` (or
    ``G G^T``), which spans the same subspace at about a third of the SVD's cost on the CPU; as the Gram
    matrix squares the singular values, directions whose ``s^2`` differ by less than float32 precision
    relative to ``s_1^2`` are not told apart.
    """

    name = "svd"

    def fit(self, grad, state, generator):
        self._fit_batch([grad], [state], [generator])

    def _fit_batch(self, grads, states, generators, sign_free=False):
        # same-shape matrices share one batched SVD (or eigendecomposition) call
        g = stacked([as_matrix(grad) for grad in grads])
        g = g if g.dtype in (torch.float32, torch.float64) else g.float()  # no SVD in half precision
        right = g.shape[1] >= g.shape[2]
        if sign_free:
            # the singular vectors on the smaller side are the eigenvectors of the small Gram matrix
            # (G^T G or G G^T, ascending eigenvalues s^2): the same subspace at a fraction of the SVD's cost
            # (no vectors of the larger side are formed), with signs of LAPACK's choosing, not the SVD's
            _, vecs = torch.linalg.eigh(g.mT @ g if right else g @ g.mT)
            for j, state in enumerate(states):
                target = state["matrix"]
                r = target.shape[0] if right else target.shape[1]
                top = vecs[j, :, vecs.shape[-1] - r:].flip(-1)  # largest first, as the SVD orders them
                target.copy_(top.T if right else top)
            return
        u, _, vh = torch.linalg.svd(g, full_matrices=False)
        for j, state in enumerate(states):
            target = state["matrix"]
            r = target.shape[0] if right else target.shape[1]
            target.copy_(vh[j, :r] if right else u[j, :, :r])


class RandomProjector(_MatrixProjector):
    """A random semi-orthogonal basis: the Q factor of a Gaussian matrix (FRUGAL's "random" projection).

    Zmushko et al., "FRUGAL: Memory-Efficient Optimization by Reducing State Overhead for Scalable
    Training", ICML 2025, arXiv:2411.07837; https://github.com/philip-zmushko/FRUGAL.
    """

    name = "random"

    def fit(self, grad, state, generator):
        self._fit_batch([grad], [state], [generator])

    def _fit_batch(self, grads, states, generators, sign_free=False):
        target = states[0]["matrix"]
        right = target.shape[0] < target.shape[1] or target.shape[0] == target.shape[1] == 0
        long, r = (target.shape[1], target.shape[0]) if right else target.shape
        # drawn on the CPU from each parameter's CPU generator so that a seed gives the same basis on every
        # device; same-shape matrices share one batched QR call
        gauss = stacked([torch.randn(long, r, generator=gen, dtype=torch.float32) for gen in generators])
        q, _ = torch.linalg.qr(gauss.double() if target.dtype == torch.float64 else gauss)
        q = q.to(target.device)
        for j, state in enumerate(states):
            state["matrix"].copy_(q[j].T if right else q[j])


class SeededRandomProjector(RandomProjector):
    """:class:`RandomProjector`'s basis, regenerated from its seed at every step instead of stored.

    The same construction from the same per-parameter, per-refresh seed (the Q factor of a CPU-drawn
    Gaussian matrix), so the updates are those of ``"random"``; the state per matrix is one int64 triple
    ``(seed, rows, cols)`` (``"basis_seed"``, an RNG kind) in place of the ``rows x cols`` float matrix. The
    price is one Gaussian draw and one QR per projected matrix and step (``materialize``, once per step:
    the bases live only while the step runs). Flora (Hao, Cao & Mou, "Flora: Low-Rank Adapters Are Secretly
    Gradient Compressors", ICML 2024, arXiv:2402.03293; https://github.com/BorealisAI/flora-opt) likewise
    keeps a seed per matrix in its state and redraws its projection from it at every step (there a scaled
    Gaussian matrix, not orthonormalized); here the basis is the orthonormal one of FRUGAL's "random".
    """

    name = "random_seeded"
    state_kinds = {"basis_seed": "rng"}

    def state(self, p, size):
        m, n = matrix_shape(p.shape)
        rows, cols = (size, n) if m >= n else (m, size)
        # float64 params get a float64 basis, as "random" stores one in the param's dtype (the sign carries it)
        sign = -1 if p.dtype == torch.float64 else 1
        return {"basis_seed": torch.tensor([0, sign * rows, cols], dtype=torch.int64, device=p.device)}

    def _fit_batch(self, grads, states, generators, sign_free=False):
        for state, gen in zip(states, generators):
            state["basis_seed"][0] = gen.initial_seed()  # the seed "random" would draw its matrix from

    def materialize(self, states):
        entries = [st["basis_seed"].tolist() for st in states]
        out: list = [None] * len(states)
        groups: dict = {}
        for j, (_, rows, cols) in enumerate(entries):
            groups.setdefault((rows, cols), []).append(j)
        for (rows, cols), idx in groups.items():
            dtype = torch.float64 if rows < 0 else torch.float32
            rows = abs(rows)
            right = rows < cols or rows == cols == 0
            long, r = (cols, rows) if right else (rows, cols)
            # drawn and factored exactly as RandomProjector._fit_batch does (CPU generator, float32 draw)
            gauss = stacked([torch.randn(long, r, generator=torch.Generator().manual_seed(entries[j][0]),
                                        dtype=torch.float32) for j in idx])
            q, _ = torch.linalg.qr(gauss.double() if dtype == torch.float64 else gauss)
            q = q.to(states[idx[0]]["basis_seed"].device)
            for k, j in enumerate(idx):
                out[j] = {"matrix": q[k].T if right else q[k]}
        return out

    def basis(self, state):
        return state["matrix"] if "matrix" in state else self.materialize([state])[0]["matrix"]


@functools.lru_cache(maxsize=32)
def _dct_basis_cached(n: int, dtype: torch.dtype, device: str) -> Tensor:
    k = torch.arange(n, dtype=torch.float64)
    basis = torch.cos(math.pi / n * (k[:, None] + 0.5) * k[None, :]) * math.sqrt(2.0 / n)
    basis[:, 0] = 1.0 / math.sqrt(n)
    return basis.to(device=device, dtype=dtype)


def dct_basis(n: int, dtype: torch.dtype = torch.float32, device="cpu") -> Tensor:
    """The orthonormal DCT-II basis of size ``n x n`` (columns are the basis vectors), built once per shape."""
    return _dct_basis_cached(int(n), dtype, str(torch.device(device)))


class DCTProjector(_MatrixProjector):
    """Columns of the orthonormal DCT-II basis most aligned with the gradient (SVD-free).

    Modoranu et al., "SVD-Free Low-Rank Adaptive Gradient Optimization for Large Language Models", 2025,
    arXiv:2505.17967. The ``n x n`` (or ``m x m``) DCT basis is a constant built once per size and shared by
    every parameter and optimizer (it is not optimizer state); each parameter stores only the ``r`` selected
    column indices (``"indices"``, int64). Selection: the ``r`` columns ``d_j`` with the largest
    ``||G d_j||`` (right side) or ``||d_j^T G||`` (left side), i.e. the basis directions that keep most of
    the gradient's energy.
    """

    name = "dct"
    state_kinds = {"indices": "index"}

    def state(self, p, size):
        return {"indices": torch.zeros(size, dtype=torch.long, device=p.device)}

    # the batched forms of the base class need the shape for the basis; DCT keeps the per-tensor loop
    def project_many(self, grads, states):
        return Projector.project_many(self, grads, states)

    def back_many(self, lows, states, shapes, *, scale=1.0, add=None, into_add=False):
        return Projector.back_many(self, lows, states, shapes, scale=scale, add=add, into_add=into_add)

    def complement_many(self, grads, lows, states):
        return Projector.complement_many(self, grads, lows, states)

    def _columns(self, state, shape, dtype):
        m, n = matrix_shape(shape)
        d = dct_basis(n if m >= n else m, dtype, state["indices"].device)
        return d[:, state["indices"]]  # (n or m) x r

    def fit(self, grad, state, generator):
        g = as_matrix(grad)
        m, n = g.shape
        d = dct_basis(n if m >= n else m, g.dtype, g.device)
        scores = norms_over(g @ d, 0) if m >= n else norms_over(d.T @ g, 1)
        r = state["indices"].numel()
        state["indices"].copy_(torch.topk(scores, r, sorted=True).indices)

    def project(self, grad, state):
        g = as_matrix(grad)
        cols = self._columns(state, grad.shape, g.dtype)
        return g @ cols if g.shape[0] >= g.shape[1] else cols.T @ g

    def oriented_basis(self, state, shape, dtype):
        m, n = matrix_shape(shape)
        cols = self._columns(state, shape, dtype)
        return cols.T if m >= n else cols

    def transition(self, old, new):
        return None  # the columns belong to one orthonormal basis: projecting back and forth is exact


class RandKProjector(Projector):
    """``k`` coordinates chosen uniformly at random (FRUGAL's "RandK" projection); stores their indices.

    Zmushko et al., FRUGAL, ICML 2025, arXiv:2411.07837; https://github.com/philip-zmushko/FRUGAL.
    Applies to tensors of any shape; the subspace size is the number of coordinates.
    """

    name = "randk"
    applies_to = "any"
    state_kinds = {"indices": "index"}

    def full_size(self, shape):
        return math.prod(shape) if len(shape) else 1

    def low_shape(self, shape, size):
        return (size,)

    def state(self, p, size):
        return {"indices": torch.zeros(size, dtype=torch.long, device=p.device)}

    def fit(self, grad, state, generator):
        k = state["indices"].numel()
        perm = torch.randperm(grad.numel(), generator=generator, device="cpu")[:k]
        state["indices"].copy_(perm.sort().values)

    def project(self, grad, state):
        return grad.reshape(-1).index_select(0, state["indices"])

    def back(self, low, state, shape):
        full = torch.zeros(math.prod(shape) if len(shape) else 1, dtype=low.dtype, device=low.device)
        full.index_copy_(0, state["indices"], low)
        return full.reshape(shape)


class BlockProjector(Projector):
    """Whole parameters are state-full, in blocks that cycle through the parameter list (BAdam-like).

    Luo et al., "BAdam: A Memory Efficient Full Parameter Optimization Method for Large Language Models",
    NeurIPS 2024, arXiv:2404.02827 (https://github.com/Ledzy/BAdam); FRUGAL's "blockwise" projection.
    At each subspace update the next parameters in group order (wrapping around) become state-full, as many
    as bring their total size closest to ``density`` times the group's, so that a density means the same
    memory as for the other projectors; the others are updated without state and hold none.
    """

    name = "block"
    whole_params = True
    applies_to = "any"


for _cls in (SVDProjector, RandomProjector, SeededRandomProjector, RandKProjector, DCTProjector, BlockProjector):
    PROJECTORS.register(_cls.name, _cls)


def get_projector(projector) -> Projector:
    """A projector instance: ``projector`` itself, or a new one of the registered name."""
    if isinstance(projector, Projector):
        return projector
    if isinstance(projector, str) and projector in PROJECTORS:
        return PROJECTORS[projector]()
    raise ValueError(f"projector must be one of {PROJECTORS.names()} or a Projector, got {projector!r}"
                     f"{suggestion(projector, PROJECTORS.names()) if isinstance(projector, str) else ''}")
