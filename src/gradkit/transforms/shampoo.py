"""Shampoo: Kronecker-factored preconditioning per block, grafted onto the step size of a simpler method.

Gupta, Koren & Singer, "Shampoo: Preconditioned Stochastic Tensor Optimization", ICML 2018,
arXiv:1802.09568; the Distributed Shampoo variant of Shi, Lee, Iwasaki, Gallego-Posada, Li, Rangadurai,
Mudigere & Rabbat, "A Distributed Data-Parallel PyTorch Implementation of the Distributed Shampoo
Optimizer for Training Neural Networks At-Scale", arXiv:2309.06497 (AlgoPerf 2024 winner); official code
https://github.com/facebookresearch/optimizers (``distributed_shampoo``).

Each tensor is reshaped (small dims merged while the product stays within ``max_preconditioner_dim``,
when ``merge_dims``) and cut into blocks whose every dim is at most ``max_preconditioner_dim``. For a
block ``G`` of order ``k`` with factors ``L_i`` per dim (Algorithm 1 of arXiv:2309.06497)::

    L_i = b2 L_i + (1 - b2) G_(i) G_(i)^T                  (b2 = 1: the sum of the original Shampoo)
    every precondition_frequency steps:
        R_i = (L_i / (1 - b2^t) + eps I)^(-1 / (2k))        (eigendecomposition; bias correction if use_bias_correction)
    M = b1 M + (1 - b1) G,  M_hat = M / (1 - b1^t)          (filtered gradient; M_hat = G when b1 = 0)
    graft = M_hat / (sqrt(v_hat) + graft_eps)               (adam: v = b2g v + (1 - b2g) G^2, bias-corrected;
                                                             adagrad: v = v + G^2; sgd: graft = M_hat)
    S = M_hat x_1 R_1 ... x_k R_k                           (Kronecker-factored preconditioning)
    u = S * ||graft|| / ||S||                               (per block; grafting="none": u = S)
    before start_preconditioning_step: u = graft

Deviations from the official code: no distributed communication (each tensor's blocks are computed
where the tensor is; the owner-rank scheme of the official code is not provided), no coupled-Newton
inverse root (eigendecomposition only), no momentum after grafting (the official ``momentum``; use a
``trace`` after this transform), and the last block of a dim is zero-padded to the block size (which
changes nothing: zero rows stay zero) so the blocks of a tensor are batched.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from gradkit.core.hyper import check_hyper, resolve
from gradkit.core.state import FIRST_MOMENT, PRECONDITIONER, SECOND_MOMENT, WHOLE_MATRIX
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean, positive, unit_interval
from gradkit.transforms.soap import positive_int

__all__ = ["scale_by_shampoo", "ScaleByShampoo", "GRAFTINGS", "BlockLayout", "inverse_root"]

GRAFTINGS = ("adam", "adagrad", "sgd", "none")
MAX_ORDER = 8


class BlockLayout:
    """How a tensor is viewed as a batch of blocks: merged shape, block size and count per dim."""

    def __init__(self, shape, max_dim: int, merge: bool):
        dims = [int(d) for d in shape] or [1]
        if merge:
            dims = merge_small_dims(dims, max_dim)
        self.shape = tuple(shape)
        self.dims = dims
        self.block = [min(d, max_dim) for d in dims]
        self.count = [math.ceil(d / b) for d, b in zip(dims, self.block)]
        self.blocks = math.prod(self.count)

    @property
    def order(self) -> int:
        return len(self.dims)

    def to_blocks(self, x: Tensor) -> Tensor:
        """(N, b_0, ..., b_{k-1}) blocks of ``x`` (zero-padded)."""
        x = x.reshape(self.dims)
        pad = [p for d, b, n in zip(reversed(self.dims), reversed(self.block), reversed(self.count))
               for p in (0, n * b - d)]
        if any(pad):
            x = F.pad(x, pad)
        k = self.order
        x = x.reshape([v for n, b in zip(self.count, self.block) for v in (n, b)])
        x = x.permute([2 * i for i in range(k)] + [2 * i + 1 for i in range(k)])
        return x.reshape(self.blocks, *self.block)

    def from_blocks(self, blocks: Tensor) -> Tensor:
        k = self.order
        x = blocks.reshape(*self.count, *self.block)
        x = x.permute([v for i in range(k) for v in (i, k + i)])
        x = x.reshape([n * b for n, b in zip(self.count, self.block)])
        x = x[tuple(slice(0, d) for d in self.dims)]
        return x.reshape(self.shape)


def merge_small_dims(dims: list[int], max_dim: int) -> list[int]:
    """Merge neighbouring dims while their product stays within ``max_dim`` (dims of size 1 vanish)."""
    out: list[int] = []
    for d in dims:
        if d == 1 and out:
            continue
        if out and out[-1] * d <= max_dim:
            out[-1] *= d
        else:
            out.append(d)
    return out


def block_gram(blocks: Tensor, dim: int) -> Tensor:
    """(N, b, b): each block contracted with itself over every dim but ``dim``."""
    x = blocks.movedim(dim + 1, 1).reshape(blocks.shape[0], blocks.shape[dim + 1], -1)
    return torch.bmm(x, x.transpose(1, 2))


def apply_along(blocks: Tensor, matrices: Tensor, dim: int) -> Tensor:
    """Multiply every block along ``dim`` by its (symmetric) matrix."""
    moved = blocks.movedim(dim + 1, 1)
    shape = moved.shape
    out = torch.bmm(matrices, moved.reshape(shape[0], shape[1], -1))
    return out.reshape(shape).movedim(1, dim + 1)


def inverse_root(matrices: Tensor, root: float, eps: float) -> Tensor:
    """``(A + eps I)^(-1/root)`` of a batch of symmetric PSD matrices, by eigendecomposition (eigenvalues
    of A below 0 from rounding are taken as 0)."""
    values, vectors = torch.linalg.eigh(matrices)
    values = values.clamp_min(0.0).add_(eps).pow_(-1.0 / root)
    return (vectors * values.unsqueeze(-2)) @ vectors.transpose(-1, -2)


def _grafting(value, group):
    return check_hyper(value, group, "grafting", lambda x: x in GRAFTINGS, f"one of {GRAFTINGS}")


@register_transform(
    "scale_by_shampoo",
    summary="Shampoo: blocked Kronecker-factored preconditioner (eigendecomposed inverse roots), grafted",
    reference="Gupta et al., Shampoo, ICML 2018, arXiv:1802.09568; Shi et al., Distributed Shampoo, arXiv:2309.06497; "
              "https://github.com/facebookresearch/optimizers",
)
class ScaleByShampoo(GradientTransform):
    """Shampoo with grafting (args as Distributed Shampoo); a factor and inverse root per block dim.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.ones(3, 2))
    >>> t = gradkit.chain(gradkit.scale_by_shampoo(), gradkit.scale_by_learning_rate())
    >>> opt = gradkit.Optimizer([w], t, {"lr": 0.1})
    >>> w.grad = torch.ones(3, 2); opt.step(); sorted(opt.state[w])
    ['shampoo.factor0', 'shampoo.filtered', 'shampoo.graft', 'shampoo.root0', 'step']
    """

    name = "shampoo"
    kind = WHOLE_MATRIX
    owner_steppable = True  # each tensor's blocks and factors are its own: sharded params step on owner ranks (core/redistribute.py)
    state_kinds = {"filtered": FIRST_MOMENT, "graft": SECOND_MOMENT,
                   **{f"factor{i}": PRECONDITIONER for i in range(MAX_ORDER)},
                   **{f"root{i}": PRECONDITIONER for i in range(MAX_ORDER)}}

    def __init__(self, betas=(0.9, 0.999), epsilon=1e-12, max_preconditioner_dim=1024, precondition_frequency=1,
                 start_preconditioning_step=-1, use_bias_correction=True, grafting="adam", grafting_beta2=0.999,
                 grafting_eps=1e-8, merge_dims=True):
        self.betas = betas
        self.epsilon = epsilon
        self.max_preconditioner_dim = max_preconditioner_dim
        self.precondition_frequency = precondition_frequency
        self.start_preconditioning_step = start_preconditioning_step
        self.use_bias_correction = use_bias_correction
        self.grafting = grafting
        self.grafting_beta2 = grafting_beta2
        self.grafting_eps = grafting_eps
        self.merge_dims = merge_dims

    def _betas(self, group):
        def ok(b):
            return (isinstance(b, (tuple, list)) and len(b) == 2 and 0 <= float(b[0]) < 1 and 0 < float(b[1]) <= 1)

        b1, b2 = check_hyper(self.betas, group, "betas", ok, "a pair (b1 in [0, 1), b2 in (0, 1])")
        return float(b1), float(b2)

    def _start(self, group):
        frequency = positive_int(self.precondition_frequency, group, "precondition_frequency")
        start = check_hyper(self.start_preconditioning_step, group, "start_preconditioning_step",
                            lambda x: isinstance(x, int) and not isinstance(x, bool) and (x == -1 or x >= frequency),
                            "-1 (the precondition_frequency) or an int >= precondition_frequency")
        return frequency, (frequency if start == -1 else int(start))

    def validate(self, group):
        self._betas(group)
        positive(self.epsilon, group, "epsilon")
        positive_int(self.max_preconditioner_dim, group, "max_preconditioner_dim")
        self._start(group)
        boolean(self.use_bias_correction, group, "use_bias_correction")
        _grafting(self.grafting, group)
        unit_interval(self.grafting_beta2, group, "grafting_beta2", closed_right=True)
        positive(self.grafting_eps, group, "grafting_eps")
        boolean(self.merge_dims, group, "merge_dims")

    def layout(self, p, group) -> BlockLayout:
        return BlockLayout(p.shape, int(resolve(self.max_preconditioner_dim, group)), bool(resolve(self.merge_dims, group)))

    def init(self, params, ctx):
        b1, _ = self._betas(ctx.group)
        state = {}
        if b1 > 0:
            state["filtered"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        if _grafting(self.grafting, ctx.group) in ("adam", "adagrad"):
            state["graft"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        layouts = [self.layout(p, ctx.group) for p in params]
        for i in range(MAX_ORDER):
            for prefix in ("factor", "root"):
                values = [torch.zeros(lay.blocks, lay.block[i], lay.block[i], dtype=p.dtype, device=p.device)
                          if i < lay.order else None for p, lay in zip(params, layouts)]
                if any(v is not None for v in values):
                    state[f"{prefix}{i}"] = values
        if any(lay.order > MAX_ORDER for lay in layouts):
            raise ValueError(f"scale_by_shampoo handles tensors of at most {MAX_ORDER} (merged) dims")
        return state

    def scalars(self, group, step):
        b1, _ = self._betas(group)
        b2g = float(resolve(self.grafting_beta2, group))
        corrected = bool(resolve(self.use_bias_correction, group))
        return {"bias_correction1": 1.0 - b1**step if corrected else 1.0,
                "graft_bias_correction2": 1.0 - b2g**step if corrected else 1.0}

    def update(self, updates, state, params, ctx):
        group = ctx.group
        s = ctx.scalars(self)
        b1, b2 = self._betas(group)
        eps = float(ctx.value(self.epsilon))
        frequency, start = self._start(group)
        bias_correction = bool(ctx.value(self.use_bias_correction))
        grafting = _grafting(self.grafting, group)
        steps = ctx.steps

        # filtered gradient (bias-corrected first moment) and the grafting direction, multi-tensor
        if b1 > 0:
            torch._foreach_lerp_(state["filtered"], updates, 1.0 - b1)
            filtered = ctx.ops.div(state["filtered"], s["bias_correction1"])
        else:
            filtered = list(updates)
        if grafting == "adam":
            b2g = float(ctx.value(self.grafting_beta2))
            ctx.ops.mul_(state["graft"], b2g)
            torch._foreach_addcmul_(state["graft"], updates, updates, 1.0 - b2g)
            denom = ctx.ops.div(state["graft"], s["graft_bias_correction2"])
        elif grafting == "adagrad":
            torch._foreach_addcmul_(state["graft"], updates, updates)
            denom = [v.clone() for v in state["graft"]]
        if grafting in ("adam", "adagrad"):
            torch._foreach_sqrt_(denom)
            ctx.ops.add_(denom, float(ctx.value(self.grafting_eps)))
            graft = torch._foreach_div(filtered, denom)
        else:
            graft = filtered

        out = []
        for j, (g, p) in enumerate(zip(updates, params)):
            t = steps[j]
            lay = self.layout(p, group)
            factors = [state[f"factor{i}"][j] for i in range(lay.order)]
            roots = [state[f"root{i}"][j] for i in range(lay.order)]
            blocks = lay.to_blocks(g)
            for i, factor in enumerate(factors):
                if b2 == 1.0:
                    factor.add_(block_gram(blocks, i))
                else:
                    factor.lerp_(block_gram(blocks, i), 1.0 - b2)
            if t % frequency == 0:
                scale = 1.0 / (1.0 - b2**t) if bias_correction and b2 < 1.0 else 1.0
                for factor, root in zip(factors, roots):
                    root.copy_(inverse_root(factor * scale, 2.0 * lay.order, eps))
            if t < start:
                out.append(graft[j])
                continue
            conditioned = lay.to_blocks(filtered[j])
            for i, root in enumerate(roots):
                conditioned = apply_along(conditioned, root, i)
            if grafting != "none":
                dims = tuple(range(1, conditioned.dim()))
                graft_norm = torch.linalg.vector_norm(lay.to_blocks(graft[j]), dim=dims)
                own_norm = torch.linalg.vector_norm(conditioned, dim=dims)
                ratio = torch.where(own_norm > 0, graft_norm / own_norm, torch.zeros_like(own_norm))
                conditioned = conditioned * ratio.reshape(-1, *([1] * (conditioned.dim() - 1)))
            out.append(lay.from_blocks(conditioned))
        return ctx.fresh(out)


scale_by_shampoo = ScaleByShampoo
