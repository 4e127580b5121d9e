"""PSGD Kron: a Kronecker-factored preconditioner fitted by the PSGD criterion, applied to momentum.

Li, "Preconditioned Stochastic Gradient Descent", IEEE TNNLS 2018, arXiv:1512.04202, and Li, "Black Box
Lie Group Preconditioners for SGD", arXiv:2211.04422 (the Kron preconditioner); official code
https://github.com/lixilinx/psgd_torch; this follows Evan Walters' ``kron-torch``
(https://github.com/evanatyourservice/kron_torch), the PyTorch port the frontier benchmarks use.

Per tensor (more than two dims merged into the matrix whose sides are closest, when ``merge_dims``),
with factors ``Q_i`` per dim (upper triangular, or diagonal for vectors, dims of size 1 or above
``max_size_triangular``, or by ``memory_save_mode``), P = Q^T Q with Q = kron(Q_i)::

    m = b1 m + (1 - b1) g;   m_hat = m / (1 - b1^t)
    with the update probability (a counter: update when 1 / prob steps have passed since the last):
        V ~ N(0, I);  m_hat <- m_hat + sqrt(eps_f32) mean|m_hat| V          (the perturbed pair (V, m_hat))
        A = Q m_hat;  B = Q^-T V                                           (along every dim)
        for each dim i:  D1 = A_(i) A_(i)^T - B_(i) B_(i)^T,  D2 = A_(i) A_(i)^T + B_(i) B_(i)^T
            triangular:  Q_i <- Q_i - precond_lr triu(D1) Q_i / lb(D2)     (lb: a lower bound of ||D2||_2)
            diagonal:    Q_i <- Q_i - precond_lr D1 Q_i / max|D2|
    u = P m_hat;  u <- u * min(1, 1.1 / rms(u))
    u <- u + wd p   (tensors with two or more dims)

The probability schedule is ``min_prob <= max_prob exp(-decay (n - flat_start)) <= max_prob`` (the
default anneals from 1 to 0.03 between steps 500 and about 4000), or a constant. The perturbed
``m_hat`` is also the one preconditioned (as in kron-torch). Deviations: the factors' scales are
rebalanced (equal inf-norms, the product unchanged) on every 100th preconditioner update instead of
with probability 0.01 from a separate generator, and the update schedule is per param group (the
official counter is shared by all groups). V is drawn from a generator per tensor, seeded from ``seed``,
the tensor's position at the first step and the step count (the seed is per-parameter state), so a run
resumed from a state_dict draws the same V; ``seed=None`` draws from torch's global generator, tensor by
tensor, as kron-torch does.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from gradkit.core.hyper import arg_name, check_hyper, is_number, resolve
from gradkit.core.state import FIRST_MOMENT, PRECONDITIONER, RNG, WHOLE_MATRIX
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean, non_negative, positive, unit_interval
from gradkit.transforms.soap import positive_int

__all__ = ["scale_by_psgd_kron", "ScaleByPSGDKron", "MEMORY_SAVE_MODES", "update_probability"]

MEMORY_SAVE_MODES = (None, "smart_one_diag", "one_diag", "all_diag")
MAX_ORDER = 8
_BALANCE_EVERY = 100
_TINY = torch.finfo(torch.float32).tiny


def update_probability(step: int, max_prob: float, min_prob: float, decay: float, flat_start: float) -> float:
    """The annealed probability of a preconditioner update at (0-based) step ``step``, in float32."""
    f32 = torch.float32
    prob = torch.tensor(max_prob, dtype=f32) * torch.exp(-torch.tensor(decay, dtype=f32)
                                                         * (torch.tensor(step, dtype=f32) - torch.tensor(flat_start, dtype=f32)))
    return prob.clamp(min=torch.tensor(min_prob, dtype=f32), max=torch.tensor(max_prob, dtype=f32))


def merged_shape(shape, merge: bool) -> list[int]:
    shape = [int(d) for d in shape]
    if len(shape) > 2 and merge:
        first = [math.prod(shape[:-1]), shape[-1]]
        second = [shape[0], math.prod(shape[1:])]
        return first if first[1] - first[0] <= second[1] - second[0] else second
    return shape


def diagonal_dims(shape, max_size: int, min_ndim: int, mode) -> list[bool]:
    """Which dims get a diagonal factor."""
    if mode is None:
        forced = [False] * len(shape)
    elif mode == "all_diag":
        forced = [True] * len(shape)
    else:
        forced = [False] * len(shape)
        largest = max(range(len(shape)), key=lambda i: (shape[i], -i)) if shape else None
        ordered = sorted(shape)
        if largest is not None and (mode == "one_diag" or (len(shape) > 1 and ordered[-1] > ordered[-2])):
            forced[largest] = True
    return [d == 1 or d > max_size or len(shape) < min_ndim or f for d, f in zip(shape, forced)]


def _along(x: Tensor, q: Tensor, dim: int, transpose: bool = False) -> Tensor:
    """Apply ``q`` (a matrix, or a diagonal as a vector) along ``dim`` of ``x``: q x (q^T x when transpose)."""
    if q.dim() == 1:
        shape = [1] * x.dim()
        shape[dim] = -1
        return x * q.reshape(shape)
    moved = x.movedim(dim, 0)
    out = torch.tensordot(q.T if transpose else q, moved, dims=([1], [0]))
    return out.movedim(0, dim)


def _solve_along(x: Tensor, q: Tensor, dim: int) -> Tensor:
    """q^-T x along ``dim`` (q upper triangular, or a diagonal as a vector)."""
    if q.dim() == 1:
        shape = [1] * x.dim()
        shape[dim] = -1
        return x / q.reshape(shape)
    moved = x.movedim(dim, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    solved = torch.linalg.solve_triangular(q.float(), rows.float(), upper=True, left=False).to(q.dtype)
    return solved.reshape(moved.shape).movedim(-1, dim)


def _gram(x: Tensor, dim: int, diagonal: bool) -> Tensor:
    moved = x.movedim(dim, 0).reshape(x.shape[dim], -1)
    return (moved * moved).sum(1) if diagonal else moved @ moved.T


def _norm_lower_bound(a: Tensor, max_abs: Tensor) -> Tensor:
    """A cheap lower bound of the spectral norm of the symmetric ``a`` (one power step from its largest column)."""
    a = a / max_abs
    column = torch.argmax((a * a).sum(0))
    x = a.index_select(1, column).flatten()
    x = x @ a
    x = x / x.norm()
    return (a @ x).norm() * max_abs


def _update_factors(factors: list[Tensor], momentum: Tensor, precond_lr: float, generator=None) -> None:
    """One PSGD fit of the factors to the pair (V, momentum); ``momentum`` is perturbed in place."""
    v = torch.randn(momentum.shape, dtype=momentum.dtype, device=momentum.device, generator=generator)
    eps = torch.tensor(torch.finfo(torch.float32).eps, dtype=momentum.dtype, device=momentum.device)
    momentum.add_(eps.sqrt() * momentum.abs().mean() * v)
    a, b = momentum, v
    for i, q in enumerate(factors):
        a = _along(a, q, i)
    for i, q in enumerate(factors):
        b = _solve_along(b, q, i)
    for i, q in enumerate(factors):
        diagonal = q.dim() == 1
        ga, gb = _gram(a, i, diagonal), _gram(b, i, diagonal)
        difference, total = (ga - gb) * precond_lr, ga + gb
        max_abs = total.abs().max()
        if diagonal:
            q.sub_(difference * q / max_abs.clamp(min=_TINY))
        else:
            scale = torch.where(max_abs > 0, _norm_lower_bound(total, max_abs), max_abs).clamp(min=_TINY)
            q.sub_((torch.triu(difference) / scale) @ q)


def _balance(factors: list[Tensor]) -> None:
    norms = torch.stack([q.abs().max() for q in factors])
    target = norms.log().mean().exp()
    for q, n in zip(factors, norms):
        q.mul_(target / n)


def _prob_schedule(value, group) -> tuple[float, ...]:
    allowed = "(max_prob, min_prob, decay, flat_start) numbers with 0 < min_prob <= max_prob <= 1, decay >= 0"
    resolved = resolve(value, group)
    shown = arg_name(value, "prob_schedule")
    if isinstance(resolved, (tuple, list)) and not all(is_number(x) for x in resolved):
        kinds = ", ".join(type(x).__name__ for x in resolved)
        raise TypeError(f"{shown} must be {allowed}, got ({kinds}) {resolved!r}")
    if not (isinstance(resolved, (tuple, list)) and len(resolved) == 4):
        raise ValueError(f"{shown} must be {allowed}, got {resolved!r}")
    out = tuple(float(x) for x in resolved)
    if not (all(math.isfinite(x) for x in out) and 0 < out[1] <= out[0] <= 1 and out[2] >= 0):
        raise ValueError(f"{shown} must be {allowed}, got {resolved!r}")
    return out


def _mode(value, group):
    return check_hyper(value, group, "memory_save_mode", lambda x: x in MEMORY_SAVE_MODES, f"one of {MEMORY_SAVE_MODES}")


@register_transform(
    "scale_by_psgd_kron",
    summary="PSGD Kron: momentum preconditioned by Kronecker factors fitted with the PSGD criterion",
    reference="Li, Preconditioned Stochastic Gradient Descent, arXiv:1512.04202; Li, Black Box Lie Group "
              "Preconditioners for SGD, arXiv:2211.04422; https://github.com/lixilinx/psgd_torch",
)
class ScaleByPSGDKron(GradientTransform):
    """PSGD Kron (args as the reference ``kron``); one Kronecker factor per (merged) dim.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.ones(3, 2))
    >>> t = gradkit.chain(gradkit.scale_by_psgd_kron(), gradkit.scale_by_learning_rate())
    >>> opt = gradkit.Optimizer([w], t, {"lr": 0.1})
    >>> w.grad = torch.ones(3, 2); opt.step(); sorted(opt.state[w])
    ['psgd.factor0', 'psgd.factor1', 'psgd.momentum', 'psgd.seed', 'step']
    """

    name = "psgd"
    kind = WHOLE_MATRIX
    group_state_keys = ("prob_step", "counter", "updates")
    owner_steppable = True  # each tensor's factors and probes are its own; the update schedule is counted per group: sharded params step on owner ranks (core/redistribute.py)
    state_kinds = {"momentum": FIRST_MOMENT, "seed": RNG, **{f"factor{i}": PRECONDITIONER for i in range(MAX_ORDER)}}

    def __init__(self, b1=0.9, weight_decay=0.0, update_probability=None, max_size_triangular=8192,
                 min_ndim_triangular=2, memory_save_mode=None, momentum_into_precond_update=True, precond_lr=0.1,
                 precond_init_scale=1.0, merge_dims=True, prob_schedule=(1.0, 0.03, 0.001, 500.0), seed=0):
        self.b1 = b1
        self.weight_decay = weight_decay
        self.update_probability = update_probability
        self.max_size_triangular = max_size_triangular
        self.min_ndim_triangular = min_ndim_triangular
        self.memory_save_mode = memory_save_mode
        self.momentum_into_precond_update = momentum_into_precond_update
        self.precond_lr = precond_lr
        self.precond_init_scale = precond_init_scale
        self.merge_dims = merge_dims
        self.prob_schedule = prob_schedule
        self.seed = seed

    def validate(self, group):
        unit_interval(self.b1, group, "b1")
        non_negative(self.weight_decay, group, "weight_decay")
        check_hyper(self.update_probability, group, "update_probability",
                    lambda x: x is None or (isinstance(x, (int, float)) and 0 < x <= 1), "None (the schedule) or in (0, 1]")
        positive_int(self.max_size_triangular, group, "max_size_triangular")
        positive_int(self.min_ndim_triangular, group, "min_ndim_triangular")
        _mode(self.memory_save_mode, group)
        boolean(self.momentum_into_precond_update, group, "momentum_into_precond_update")
        positive(self.precond_lr, group, "precond_lr")
        positive(self.precond_init_scale, group, "precond_init_scale")
        boolean(self.merge_dims, group, "merge_dims")
        _prob_schedule(self.prob_schedule, group)
        check_hyper(self.seed, group, "seed", lambda x: x is None or (isinstance(x, int) and not isinstance(x, bool)),
                    "None (torch's global generator) or an int")

    def _shapes(self, p, group):
        shape = merged_shape(p.shape, bool(resolve(self.merge_dims, group)))
        diag = diagonal_dims(shape, int(resolve(self.max_size_triangular, group)),
                             int(resolve(self.min_ndim_triangular, group)), _mode(self.memory_save_mode, group))
        return shape, diag

    def init(self, params, ctx):
        state = {"momentum": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}
        seed = ctx.value(self.seed)
        if seed is not None:  # one stream per tensor, kept in its state so that a resumed run draws the same V
            state["seed"] = [(int(seed) * 1_000_003 + i) % (1 << 62) for i in range(len(params))]
        init_scale = float(ctx.value(self.precond_init_scale))
        shapes = [self._shapes(p, ctx.group) for p in params]
        if any(len(s) > MAX_ORDER for s, _ in shapes):
            raise ValueError(f"scale_by_psgd_kron handles tensors of at most {MAX_ORDER} (merged) dims")
        for i in range(MAX_ORDER):
            values = []
            for p, (shape, diag) in zip(params, shapes):
                if i >= len(shape):
                    values.append(None)
                    continue
                scale = init_scale ** (1.0 / len(shape))
                eye = torch.ones(shape[i], dtype=p.dtype, device=p.device) if diag[i] else \
                    torch.eye(shape[i], dtype=p.dtype, device=p.device)
                values.append(eye * scale)
            if any(v is not None for v in values):
                state[f"factor{i}"] = values
        return state

    def _do_update(self, ctx) -> bool:
        sched = ctx.group_state
        if not sched:
            sched.update(prob_step=0, counter=0, updates=0)
        fixed = ctx.value(self.update_probability)
        prob = torch.tensor(float(fixed), dtype=torch.float32) if fixed is not None else \
            update_probability(sched["prob_step"], *_prob_schedule(self.prob_schedule, ctx.group))
        sched["counter"] += 1
        do = bool(sched["counter"] >= 1 / prob)
        if do:
            sched["counter"] = 0
            sched["updates"] += 1
        sched["prob_step"] += 1
        return do

    def scalars(self, group, step):
        return {"bias_correction1": 1.0 - float(resolve(self.b1, group)) ** step}

    def update(self, updates, state, params, ctx):
        b1 = float(ctx.value(self.b1))
        momentum = state["momentum"]
        ctx.ops.mul_(momentum, b1)
        torch._foreach_add_(momentum, updates, alpha=1.0 - b1)
        debiased = ctx.ops.div(momentum, ctx.scalars(self)["bias_correction1"])
        do_update = self._do_update(ctx)
        balance = do_update and ctx.group_state["updates"] % _BALANCE_EVERY == 0
        precond_lr = float(ctx.value(self.precond_lr))
        into = bool(ctx.value(self.momentum_into_precond_update))
        out = []
        for j, p in enumerate(params):
            shape, _ = self._shapes(p, ctx.group)
            factors = [state[f"factor{i}"][j] for i in range(len(shape))]
            m = debiased[j].view(shape)
            if balance and len(shape) > 1:
                _balance(factors)
            if do_update:
                generator = None
                if "seed" in state:
                    generator = torch.Generator(device=p.device)
                    generator.manual_seed((state["seed"][j] * 7919 + ctx.steps[j]) % (1 << 62))
                _update_factors(factors, m if into else updates[j].reshape(shape).clone(), precond_lr, generator)
            u = m
            for i, q in enumerate(factors):
                u = _along(u, q, i)
            for i, q in enumerate(factors):
                u = _along(u, q, i, transpose=True)
            u = u * torch.clamp(1.1 / (u.square().mean().sqrt() + 1e-12), max=1.0)
            out.append(u.view(p.shape))
        weight_decay = float(ctx.value(self.weight_decay))
        if weight_decay:
            ctx.add_decay([weight_decay if p.dim() >= 2 else 0.0 for p in params])
        return ctx.fresh(out)


scale_by_psgd_kron = ScaleByPSGDKron
