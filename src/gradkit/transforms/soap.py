"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner.

Vyas, Morwani, Zhao, Kwun, Shapira, Brandfonbrener, Janson & Kakade, "SOAP: Improving and Stabilizing
Shampoo using Adam", ICLR 2025, arXiv:2409.11321; official code https://github.com/nikhilvyas/SOAP.

Per tensor ``G`` with dims ``i`` (each dim up to ``max_precondition_dim``; vectors only with
``precondition_1d``), Kronecker factors ``L_i`` and their eigenbases ``Q_i`` (Algorithm 3 of the paper,
as the official code orders it)::

    t = 1:      L_i = (1 - b_s) G_(i) G_(i)^T;   Q_i = eigenvectors of L_i (descending);   no step
    t > 1:      G' = G x_i Q_i^T                                    (rotate into the eigenbasis)
                m = b1 m + (1 - b1) G                               (momentum in the original space)
                v = b2 v + (1 - b2) G'^2                            (second moment in the eigenbasis)
                u = ((m x_i Q_i^T) / (sqrt(v) + eps)) x_i Q_i       (Adam in the eigenbasis, rotated back)
                u <- u * sqrt(1 - b2^s) / (1 - b1^s),  s = t - 1    (correct_bias)
                L_i = b_s L_i + (1 - b_s) G_(i) G_(i)^T
                every precondition_frequency steps (s % f == 0): one power step and QR,
                    Q_i <- QR(L_i Q_i[:, order]) with order sorting diag(Q_i^T L_i Q_i) descending,
                    and v permuted along dim i by the same order (the moments follow the rotated basis)

``b_s`` is ``shampoo_beta`` (``None``: b2). Deviations: the official code applies the decoupled decay
after the step (``p <- (p - lr u)(1 - lr wd)``), the recipe before it (``p <- p (1 - lr wd) - lr u``, as
AdamW), a difference of ``lr^2 wd u``; ``merge_dims``, ``normalize_gradient`` and ``data_format`` are not
provided (conv weights get one factor per dim). The rotations run per tensor (whole matrices).
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import check_hyper, resolve
from gradkit.core.state import FIRST_MOMENT, PRECONDITIONER, SECOND_MOMENT, WHOLE_MATRIX
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, boolean, positive
from gradkit.transforms._kronecker import contract, factor_dims, gram

__all__ = ["scale_by_soap", "ScaleBySOAP", "MAX_DIMS"]

MAX_DIMS = 8  # tensors with more dims keep factors for the first MAX_DIMS only (state keys are fixed)


def positive_int(value, group, name):
    return int(check_hyper(value, group, name, lambda x: isinstance(x, int) and not isinstance(x, bool) and x > 0,
                           "an int > 0"))


def unit_or_none(value, group, name):
    return check_hyper(value, group, name, lambda x: x is None or (isinstance(x, (int, float)) and 0 <= x < 1),
                       "None or in [0, 1)")


@register_transform(
    "scale_by_soap",
    summary="SOAP: Adam in the eigenbasis of Shampoo's Kronecker factors, refreshed by a QR power step",
    reference="Vyas et al., SOAP: Improving and Stabilizing Shampoo using Adam, ICLR 2025, arXiv:2409.11321; "
              "https://github.com/nikhilvyas/SOAP",
)
class ScaleBySOAP(GradientTransform):
    """SOAP (args as the official ``SOAP``); one factor and eigenbasis per preconditioned dim.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.ones(3, 2))
    >>> t = gradkit.chain(gradkit.scale_by_soap(), gradkit.scale_by_learning_rate())
    >>> opt = gradkit.Optimizer([w], t, {"lr": 0.1})
    >>> w.grad = torch.ones(3, 2); opt.step(); sorted(opt.state[w])
    ['soap.basis0', 'soap.basis1', 'soap.exp_avg', 'soap.exp_avg_sq', 'soap.factor0', 'soap.factor1', 'step']
    """

    name = "soap"
    kind = WHOLE_MATRIX
    owner_steppable = True  # each tensor's factors and eigenbases are its own: sharded params step on owner ranks (core/redistribute.py)
    state_kinds = {"exp_avg": FIRST_MOMENT, "exp_avg_sq": SECOND_MOMENT,
                   **{f"factor{i}": PRECONDITIONER for i in range(MAX_DIMS)},
                   **{f"basis{i}": PRECONDITIONER for i in range(MAX_DIMS)}}

    def __init__(self, betas=(0.95, 0.95), shampoo_beta=None, eps=1e-8, precondition_frequency=10,
                 max_precondition_dim=10000, precondition_1d=False, correct_bias=True):
        self.betas = betas
        self.shampoo_beta = shampoo_beta
        self.eps = eps
        self.precondition_frequency = precondition_frequency
        self.max_precondition_dim = max_precondition_dim
        self.precondition_1d = precondition_1d
        self.correct_bias = correct_bias

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        unit_or_none(self.shampoo_beta, group, "shampoo_beta")
        positive(self.eps, group, "eps")
        positive_int(self.precondition_frequency, group, "precondition_frequency")
        positive_int(self.max_precondition_dim, group, "max_precondition_dim")
        boolean(self.precondition_1d, group, "precondition_1d")
        boolean(self.correct_bias, group, "correct_bias")

    def _dims(self, p, ctx):
        dims = factor_dims(p.shape, int(ctx.value(self.max_precondition_dim)), bool(ctx.value(self.precondition_1d)))
        return [i for i in dims if i < MAX_DIMS]

    def init(self, params, ctx):
        state = {"exp_avg": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
                 "exp_avg_sq": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}
        for i in range(MAX_DIMS):
            for prefix in ("factor", "basis"):
                values = [torch.zeros(p.shape[i], p.shape[i], dtype=p.dtype, device=p.device)
                          if i in self._dims(p, ctx) else None for p in params]
                if any(v is not None for v in values):
                    state[f"{prefix}{i}"] = values
        return state

    def scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        # the first step only gathers statistics; the moments then have one step fewer than the tensor
        return {"correction": math.sqrt(1.0 - b2 ** (step - 1)) / (1.0 - b1 ** (step - 1)) if step > 1 else 0.0}

    def update(self, updates, state, params, ctx):
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        shampoo_beta = ctx.value(self.shampoo_beta)
        shampoo_beta = b2 if shampoo_beta is None else float(shampoo_beta)
        eps = float(ctx.value(self.eps))
        frequency = int(ctx.value(self.precondition_frequency))

        def matrices(prefix, j):
            return [state[f"{prefix}{i}"][j] if f"{prefix}{i}" in state and state[f"{prefix}{i}"][j] is not None
                    else None for i in range(params[j].dim())]

        running = [j for j, t in enumerate(ctx.steps) if t > 1]
        exp_avg = [state["exp_avg"][j] for j in running]
        exp_avg_sq = [state["exp_avg_sq"][j] for j in running]
        grads = [updates[j] for j in running]
        out = [torch.zeros_like(u) for u in updates]
        if running:
            rotated = [contract(updates[j], matrices("basis", j)) for j in running]
            torch._foreach_lerp_(exp_avg, grads, 1.0 - b1)
            torch._foreach_lerp_(exp_avg_sq, torch._foreach_mul(rotated, rotated), 1.0 - b2)
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_add_(denom, eps)
            rotated_m = [contract(state["exp_avg"][j], matrices("basis", j)) for j in running]
            quotients = torch._foreach_div(rotated_m, denom)
            for q, j in zip(quotients, running):
                out[j] = contract(q, matrices("basis", j), transpose=True)
        # the preconditioner statistics of this step (after the update, as in the official code)
        for j, t in enumerate(ctx.steps):
            bases, factors = matrices("basis", j), matrices("factor", j)
            for i, factor in enumerate(factors):
                if factor is not None:
                    factor.lerp_(gram(updates[j], i), 1.0 - shampoo_beta)
            if t == 1:
                new_bases = [None if factor is None else _eigenbasis(factor) for factor in factors]
            elif (t - 1) % frequency == 0:
                new_bases, state["exp_avg_sq"][j] = _refresh(factors, bases, state["exp_avg_sq"][j])
            else:
                continue
            # the new bases replace the state tensors (not copied into them): LAPACK returns them
            # column-major, and keeping that layout keeps the rotations' matrix products the same
            for i, basis in enumerate(new_bases):
                if basis is not None:
                    state[f"basis{i}"][j] = basis
        if ctx.value(self.correct_bias):
            ctx.multiply(ctx.scalars(self)["correction"])
        return ctx.fresh(out)


def _eigenbasis(factor: torch.Tensor) -> torch.Tensor:
    """Eigenvectors of a symmetric factor, by decreasing eigenvalue (the official ``eigh`` + flip)."""
    eye = torch.eye(factor.shape[0], device=factor.device, dtype=factor.dtype)
    _, vectors = torch.linalg.eigh(factor + 1e-30 * eye)
    return torch.flip(vectors, dims=[1])


def _refresh(factors, bases, exp_avg_sq):
    """One power step and QR per factor: the new bases, and the second moment with its entries
    reordered as the basis vectors are."""
    new_bases = []
    for i, (factor, basis) in enumerate(zip(factors, bases)):
        if factor is None:
            new_bases.append(None)
            continue
        product = factor @ basis
        estimates = (basis * product).sum(dim=0)
        order = torch.argsort(estimates, descending=True)
        exp_avg_sq = exp_avg_sq.index_select(i, order)
        q, _ = torch.linalg.qr(product.index_select(1, order).float())
        new_bases.append(q.to(basis.dtype))
    return new_bases, exp_avg_sq


scale_by_soap = ScaleBySOAP
