"""L-GreCo: per-layer gradient compression chosen by dynamic programming under an error budget.

Alimohammadi, Markov, Frantar & Alistarh, "L-GreCo: Layerwise-Adaptive Gradient Compression for
Efficient and Accurate Deep Learning", MLSys 2024, arXiv:2210.17357; official code
https://github.com/LGrCo/L-GreCo.

Every compressible layer ``l`` (a weight matrix) can be sent at one of several compression levels ``k``;
level ``k`` costs ``size[l, k]`` elements and loses ``error[l, k] = ||G_l - C_k(G_l)||^2``. L-GreCo picks

    min_k  sum_l size[l, k_l]   subject to   sum_l error[l, k_l] <= budget,
    budget = error_factor * sum_l error[l, default]

(the error of uniform compression at the default level), by a knapsack-style dynamic programme over the
total error discretised into ``bins`` units (``lgreco_select``); errors are rounded *up* to units, so the
choice always meets the budget exactly and is optimal up to that rounding; the hook also keeps the
uniform choice where the rounding would make the programme's choice larger than it.

The compressor here is PowerSGD (Vogels et al., arXiv:1905.13727) with warm-started ``Q`` and error
feedback, levels being its ranks: ``size = r (n + m)`` for an ``n x m`` gradient and ``error`` the squared
tail of its singular values beyond ``r`` (the error of the best rank-r approximation, which warm-started
PowerSGD approaches). ``LGreCo`` is the state of a ``DistributedDataParallel`` communication hook
(``ddp.register_comm_hook(state, lgreco_hook)``): the first ``warmup_steps`` steps and every
``update_every``-th step after them are sent uncompressed; on those selection steps every rank holds the
same averaged gradients, computes the same error table and runs the same programme, so the levels agree
without extra communication. Vectors and matrices with fewer than ``min_numel`` elements are always sent
uncompressed. ``adaptive=False`` keeps the default rank everywhere (uniform PowerSGD, the baseline).
``bytes_sent`` counts what this rank put into all-reduces.

Deviations: the error table comes from the one gradient of the selection step (the paper accumulates
statistics over the period); top-k sparsification, the paper's other compressor, is not offered. The hook
works synchronously (the all-reduces finish before it returns a completed future).
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist

__all__ = ["LGreCo", "lgreco_hook", "lgreco_select"]


def lgreco_select(errors, sizes, budget: float, bins: int = 1000, baseline=None) -> list[int]:
    """The level per layer minimising the total size with total error at most ``budget``.

    Args:
        errors, sizes: ``L x K`` (nested lists or tensors); ``inf`` error marks a level a layer lacks.
        budget: the allowed total error (>= 0).
        bins: units the budget is cut into; each error is rounded up to whole units.
        baseline: optionally a choice (one level index per layer) that meets the budget, e.g. the uniform
            default; it is returned instead when the programme's choice is larger (the rounding up can
            make a choice that meets the budget exactly, such as the uniform one, look infeasible).

    Math: ``min sum_l sizes[l, k_l]  s.t.  sum_l ceil(errors[l, k_l] bins / budget) <= bins``.
    Raises ``ValueError`` when no choice meets the budget.

    >>> lgreco_select([[4., 1., 0.], [9., 2., 0.]], [[1, 2, 8], [1, 2, 8]], budget=6.5)
    [0, 1]
    """
    err = torch.as_tensor(errors, dtype=torch.float64)
    size = torch.as_tensor(sizes, dtype=torch.float64)
    if err.ndim != 2 or err.shape != size.shape:
        raise ValueError(f"errors and sizes must both be L x K, got {tuple(err.shape)} and {tuple(size.shape)}")
    if not budget >= 0 or math.isinf(budget):
        raise ValueError(f"budget must be a finite number >= 0, got {budget!r}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an int >= 1, got {bins!r}")
    if budget > 0:
        units = torch.ceil(err * bins / budget)
    else:
        units = torch.where(err <= 0, 0.0, torch.inf)
    units = torch.where(units > bins, torch.inf, units)
    layers, levels = err.shape
    best = torch.full((bins + 1,), torch.inf, dtype=torch.float64)
    best[0] = 0.0  # best[e]: least size with exactly e units used so far
    picks = []
    for layer in range(layers):
        options = torch.full((levels, bins + 1), torch.inf, dtype=torch.float64)
        for k in range(levels):
            u = units[layer, k]
            if torch.isfinite(u):
                u = int(u)
                options[k, u:] = best[:bins + 1 - u] + size[layer, k]
        best, pick = options.min(0)
        picks.append(pick)
    if not torch.isfinite(best).any():
        raise ValueError(f"no choice of levels meets the error budget {budget!r}")
    e = int(best.argmin())
    chosen = []
    for layer in reversed(range(layers)):
        k = int(picks[layer][e])
        chosen.append(k)
        e -= int(units[layer, k])
    chosen = chosen[::-1]
    if baseline is not None:
        baseline = [int(k) for k in baseline]
        if len(baseline) != layers:
            raise ValueError(f"baseline must give one level per layer ({layers}), got {len(baseline)}")
        cost = lambda choice, table: float(sum(table[i, k] for i, k in enumerate(choice)))  # noqa: E731
        if cost(baseline, err) <= budget and cost(baseline, size) < cost(chosen, size):
            return baseline
    return chosen


class LGreCo:
    """State of the L-GreCo communication hook (see the module docstring).

    Args:
        model: the module wrapped by DDP (its parameter names key the per-layer state; build the state
            after the model is on its device, since parameters are recognised by their storage).
        process_group: the DDP group (``None``: the default group).
        ranks: the PowerSGD ranks to choose from (ints >= 1).
        default_rank: the uniform level whose error sets the budget (one of ``ranks``).
        error_factor: budget = ``error_factor`` x the default level's total error (> 0).
        adaptive: ``False`` for uniform PowerSGD at ``default_rank`` (no selection).
        warmup_steps, update_every: uncompressed steps first, then a new selection every ``update_every``.
        min_numel: matrices smaller than this are sent uncompressed.
        bins: the discretisation of the dynamic programme.
        seed: seeds each matrix's initial ``Q`` (identical on every rank).

    >>> state = LGreCo(torch.nn.Linear(4, 4), ranks=(1, 2), default_rank=2)
    >>> state.levels, state.bytes_sent
    ({}, 0)
    """

    def __init__(self, model, process_group=None, ranks=(1, 2, 4, 8, 16), default_rank: int = 4,
                 error_factor: float = 1.0, adaptive: bool = True, warmup_steps: int = 10, update_every: int = 50,
                 min_numel: int = 256, bins: int = 1000, seed: int = 0):
        ranks = tuple(ranks)
        if not ranks or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ranks):
            raise ValueError(f"ranks must be ints >= 1, got {ranks!r}")
        if default_rank not in ranks:
            raise ValueError(f"default_rank must be one of ranks {ranks}, got {default_rank!r}")
        if not error_factor > 0 or math.isinf(error_factor):
            raise ValueError(f"error_factor must be a positive finite number, got {error_factor!r}")
        for name, value, low in (("warmup_steps", warmup_steps, 0), ("update_every", update_every, 1),
                                 ("min_numel", min_numel, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        self.process_group = process_group
        self.ranks, self.default_rank, self.error_factor = tuple(sorted(ranks)), default_rank, float(error_factor)
        self.adaptive, self.warmup_steps, self.update_every = adaptive, warmup_steps, update_every
        self.min_numel, self.bins, self.seed = min_numel, bins, seed
        named = list(model.named_parameters())
        self._names = {p.data_ptr(): n for n, p in named}
        self._index = {n: i for i, (n, _) in enumerate(named)}
        self.levels: dict[str, int] = {}      # name -> chosen rank (compressible matrices only)
        self.selection: dict | None = None    # the last programme's inputs and result
        self.history: list[tuple[int, list[int]]] = []  # (step, ranks in parameter order) per selection
        self.step = 0
        self.bytes_sent = 0
        self._q, self._err, self._pending = {}, {}, {}

    def compressible(self, grad: torch.Tensor) -> bool:
        return grad.ndim >= 2 and grad.numel() >= self.min_numel and min(grad.shape[0], grad[0].numel()) > 1

    def _selecting(self) -> bool:
        return self.step >= self.warmup_steps and (self.step - self.warmup_steps) % self.update_every == 0

    def _select(self) -> None:
        names = sorted(self._pending, key=self._index.get)
        errors, sizes, defaults = [], [], []
        for name in names:
            g = self._pending[name]
            sv2 = torch.linalg.svdvals(g.double()).square()
            tail = sv2.flip(0).cumsum(0).flip(0)  # tail[r] = sum of sv2[r:]
            n, m = g.shape
            row_e, row_s = [], []
            for r in self.ranks:
                ok = r < min(n, m)
                row_e.append(float(tail[r]) if ok else math.inf)
                row_s.append(r * (n + m) if ok else math.inf)
            usable = [r for r in self.ranks if r < min(n, m)]
            if not usable:  # too thin for any rank: keep it as rank-1 anyway would not save; mark uncompressed
                row_e, row_s = [0.0] + [math.inf] * (len(self.ranks) - 1), [n * m] + [math.inf] * (len(self.ranks) - 1)
            d = min(self.default_rank, max(usable)) if usable else self.ranks[0]
            defaults.append(self.ranks.index(d))
            errors.append(row_e)
            sizes.append(row_s)
        if not names:
            return
        budget = self.error_factor * sum(errors[i][k] for i, k in enumerate(defaults))
        chosen = lgreco_select(errors, sizes, budget, self.bins, baseline=defaults) if self.adaptive else defaults
        self.levels = {n: self.ranks[k] for n, k in zip(names, chosen)}
        self.selection = {"names": names, "ranks": [self.ranks[k] for k in chosen], "budget": budget,
                          "errors": errors, "sizes": sizes, "default": defaults, "chosen": chosen,
                          "total_error": sum(errors[i][k] for i, k in enumerate(chosen)),
                          "size": sum(sizes[i][k] for i, k in enumerate(chosen)),
                          "uniform_size": sum(sizes[i][k] for i, k in enumerate(defaults))}
        self.history.append((self.step, [self.ranks[k] for k in chosen]))
        self._pending = {}


def _all_reduce(state: LGreCo, tensor: torch.Tensor) -> None:
    state.bytes_sent += tensor.numel() * tensor.element_size()
    dist.all_reduce(tensor, group=state.process_group)


def lgreco_hook(state: LGreCo, bucket):  # no return annotation: DDP checks it against the un-postponed type
    """DDP communication hook: average the bucket's gradients, each matrix compressed at its chosen rank.

    Register with ``ddp_model.register_comm_hook(LGreCo(model), lgreco_hook)``; see ``LGreCo``.
    """
    world = dist.get_world_size(group=state.process_group)
    buffer = bucket.buffer()
    grads = bucket.gradients()
    names = [state._names.get(p.data_ptr()) for p in bucket.parameters()]
    offsets = [0]
    for g in grads:
        offsets.append(offsets[-1] + g.numel())
    compressing = state.step >= state.warmup_steps and not state._selecting() and (state.levels or not state.adaptive)
    if not compressing:
        _all_reduce(state, buffer)
        buffer.div_(world)
        if state._selecting():
            for name, g, a in zip(names, grads, offsets):
                if name is not None and state.compressible(g):
                    state._pending[name] = buffer[a:a + g.numel()].view(g.shape[0], -1).clone()
    else:
        plain, low = [], []
        for i, (name, g) in enumerate(zip(names, grads)):
            rank = state.levels.get(name, state.default_rank if not state.adaptive else None)
            n, m = g.shape[0], g.numel() // max(g.shape[0], 1)
            if name is None or not state.compressible(g) or rank is None or rank >= min(n, m):
                plain.append(i)
            else:
                low.append((i, name, rank, n, m))
        if plain:
            flat = torch.cat([buffer[offsets[i]:offsets[i + 1]] for i in plain])
            _all_reduce(state, flat)
            flat.div_(world)
            a = 0
            for i in plain:
                k = offsets[i + 1] - offsets[i]
                buffer[offsets[i]:offsets[i + 1]].copy_(flat[a:a + k])
                a += k
        if low:
            mats, qs = [], []
            for i, name, rank, n, m in low:
                mat = buffer[offsets[i]:offsets[i + 1]].view(n, m)
                err = state._err.get(name)
                mat = mat + err if err is not None and err.shape == mat.shape else mat.clone()
                q = state._q.get(name)
                if q is None or q.shape != (m, rank):
                    gen = torch.Generator().manual_seed(state.seed * 100003 + state._index[name])
                    q = torch.randn(m, rank, generator=gen, dtype=mat.dtype)
                mats.append(mat)
                qs.append(q)
            ps = [mat @ q for mat, q in zip(mats, qs)]
            flat_p = torch.cat([p.flatten() for p in ps])
            _all_reduce(state, flat_p)
            a, ps_orth = 0, []
            for p in ps:
                ps_orth.append(torch.linalg.qr(flat_p[a:a + p.numel()].view_as(p)).Q)
                a += p.numel()
            qs = [mat.T @ p for mat, p in zip(mats, ps_orth)]
            flat_q = torch.cat([q.flatten() for q in qs])
            _all_reduce(state, flat_q)
            flat_q.div_(world)
            a = 0
            for (i, name, rank, n, m), mat, p, q in zip(low, mats, ps_orth, qs):
                q = flat_q[a:a + q.numel()].view_as(q).clone()
                a += q.numel()
                approx = p @ q.T
                state._err[name] = mat - approx
                state._q[name] = q
                buffer[offsets[i]:offsets[i + 1]].copy_(approx.flatten())
    if bucket.is_last():
        if state._selecting():
            state._select()
        state.step += 1
    fut = torch.futures.Future()
    fut.set_result(buffer)
    return fut
