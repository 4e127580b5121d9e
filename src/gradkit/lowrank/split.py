"""Split each gradient into a state-full part in a subspace and a state-free complement.

This is the one mechanism behind FRUGAL, GaLore, Fira, the SVD-free variant and subspace momentum. Per
parameter with gradient ``G`` and a projector (basis ``P``, refreshed every ``update_freq`` steps)::

    R = project(G)                        low-dimensional coordinates
    U = scale * back(inner(R))            any stateful gradkit transform (Adam, momentum, ...) in the subspace
    C = G - back(R)                       the complement, orthogonal to the subspace
    update = U + complement_rule(C)       "none" (GaLore), "sign" / "sgd" (FRUGAL), "fira" (Fira)

Parameters the projector does not apply to (vectors, for matrix projectors), parameters of a group whose
``project`` flag is False, and parameters whose subspace is the whole space are updated by ``inner`` on the
full gradient: at full size any orthonormal basis spans everything, and the coordinate basis keeps the inner
optimizer's update exactly. A subspace of size 0 leaves only the complement rule (no state at all).

When the subspace changes, ``state_policy`` says what happens to the inner state: ``"reset"`` zeroes it and
restarts the inner step count (FRUGAL's default), ``"project"`` maps it into the new subspace (first-order
state through the transition ``T = P_new^T P_old``, state of a non-negative kind -- second moments --
through ``T * T`` elementwise, which keeps it non-negative and is exact for coordinate selections) and
``"keep"`` leaves it as it is (GaLore).

Randomness (random bases, RandK coordinates) comes from a per-parameter seed kept in state and the step, so
a run resumed from a state_dict draws exactly the same subspaces.
"""
from __future__ import annotations

import torch
from torch import Tensor

from gradkit.core.context import StepContext
from gradkit.core.hyper import check_hyper, hp
from gradkit.core.state import COUNTER, NORM, PER_TENSOR, RNG, as_kind, nest, split_key, unnest
from gradkit.core.transform import GradientTransform, as_inner
from gradkit.lowrank.projectors import (Projector, get_projector, matrix_shape, norms_over, stacked,
                                        stacking_batches)
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean, non_negative

__all__ = ["ProjectedSplit", "project_split", "COMPLEMENTS", "STATE_POLICIES"]

COMPLEMENTS = ("none", "sign", "sgd", "fira")
STATE_POLICIES = ("reset", "project", "keep")
_UNSET = -1.0


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64-style), so nearby seeds give unrelated streams."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


def _choose_block(sizes: list[int], density: float, cursor: int) -> list[int]:
    """Consecutive positions from ``cursor`` (wrapping) whose total size is closest to ``density * sum``.

    The block holds about the same share of coordinates as the other projectors at the same density, so
    ``density`` means the same memory for every projector; density 1 takes everything, 0 nothing.
    """
    budget = density * sum(sizes)
    picked, total = [], 0
    for step in range(len(sizes)):
        j = (cursor + step) % len(sizes)
        if abs(total + sizes[j] - budget) >= abs(total - budget):  # adding it would move away from the budget
            break
        picked.append(j)
        total += sizes[j]
    return picked


@register_transform(
    "project_split",
    summary="state-full update in a projected subspace plus a state-free rule on the complement",
    reference="Zmushko et al., FRUGAL, ICML 2025, arXiv:2411.07837; https://github.com/philip-zmushko/FRUGAL",
)
class ProjectedSplit(GradientTransform):
    """Run ``inner`` on projected gradients and a state-free rule on the complement (see module docstring).

    Args:
        inner: the stateful transform (or chain) applied in the subspace. For projected parameters it is
            given the projected gradient in place of ``params`` (there are no parameters in the subspace), so
            put weight decay in the outer chain; it must not scale by the learning rate (the outer chain does).
        projector: "svd", "random", "randk", "dct", "block" or a :class:`Projector`.
        rank: subspace size (matrix rank, or coordinates for RandK); ``None`` uses ``density``.
        density: fraction of the full size kept state-full (``rho`` in FRUGAL) when ``rank`` is None.
        update_freq: steps between subspace updates (``T``).
        state_policy: "reset", "project" or "keep" (what inner state does when the subspace changes).
        complement: "none", "sign", "sgd" or "fira".
        free_scale: multiplies the "sign"/"sgd" complement update (its own learning-rate scale).
        scale: multiplies the back-projected state-full update (GaLore's ``alpha``).
        limiter: Fira's norm-growth limit ``gamma`` (> 1).
        project: group flag; False updates every parameter of the group with ``inner`` on its full gradient.
        seed: base seed of the random projectors.
    """

    name = "lowrank"
    kind = PER_TENSOR
    # the inner transform's state is nested under "inner." (projected or whole parameters) and "block."
    # (block-mode parameters, held in lists), the projector's under "proj."
    state_kinds = {"inner_step": COUNTER, "seed": RNG, "residual_norm": NORM}

    def __init__(self, inner: GradientTransform, projector="svd", *, rank=None, density=hp("density"),
                 update_freq=hp("update_freq"), state_policy=hp("state_policy"), complement="sign",
                 free_scale=1.0, scale=1.0, limiter=1.01, project=hp("project"), seed=0):
        if not isinstance(inner, GradientTransform):
            raise TypeError(f"inner must be a GradientTransform (e.g. scale_by_adam()), got {type(inner).__name__}")
        self.inner = as_inner(inner)
        if self.inner.lr_applied:
            names = [type(t).__name__ for t in self.inner.transforms if t.lr_applied]
            raise ValueError(f"ProjectedSplit's inner transform must not apply the learning rate ({', '.join(names)}): "
                             "put scale_by_learning_rate in the outer chain, after ProjectedSplit")
        self.projector: Projector = get_projector(projector)
        # On sharded (DTensor) params only the block projector, which takes params whole, is exact; the
        # others build a basis from each whole matrix, so the optimizer refuses them there (core/sharding.py).
        self.runs_on_dtensors = self.projector.whole_params
        # the other projectors step each matrix whole on an owner rank (core/redistribute.py)
        self.owner_steppable = not self.projector.whole_params
        if complement not in COMPLEMENTS:
            raise ValueError(f"complement must be one of {COMPLEMENTS}, got {complement!r}")
        if rank is not None and not (isinstance(rank, int) and not isinstance(rank, bool) and rank >= 0):
            raise ValueError(f"rank must be None or an int >= 0, got {rank!r}")
        if rank == 0 and complement == "none":
            raise ValueError("rank must be >= 1 with complement='none': rank 0 would freeze the projected params")
        self.rank = rank
        self.density = density
        self.update_freq = update_freq
        self.state_policy = state_policy
        self.complement = complement
        self.free_scale = free_scale
        self.scale = scale
        self.limiter = limiter
        self.project = project
        self.seed = seed

    # -- configuration --------------------------------------------------------------------------
    def validate(self, group):
        self.inner.validate(group)
        if self.rank is None:
            if self.complement == "none":  # nothing updates the complement: density 0 would freeze the params
                check_hyper(self.density, group, "density",
                            lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x <= 1,
                            "in (0, 1] with complement='none'")
            else:
                check_hyper(self.density, group, "density",
                            lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1, "in [0, 1]")
        check_hyper(self.update_freq, group, "update_freq",
                    lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 1, "an int >= 1")
        check_hyper(self.state_policy, group, "state_policy", lambda x: x in STATE_POLICIES, f"one of {STATE_POLICIES}")
        non_negative(self.free_scale, group, "free_scale")
        non_negative(self.scale, group, "scale")
        check_hyper(self.limiter, group, "limiter", lambda x: float(x) > 1.0, "a number > 1")
        boolean(self.project, group, "project")
        check_hyper(self.seed, group, "seed", lambda x: isinstance(x, int) and not isinstance(x, bool), "an int")

    def _size(self, p: Tensor, ctx) -> int:
        full = self.projector.full_size(p.shape)
        if self.rank is not None:
            return min(self.rank, full)
        return min(full, int(round(float(ctx.value(self.density)) * full)))

    def _role(self, p: Tensor, ctx) -> str:
        """'full' (inner on the whole gradient), 'low' (projected), 'free' (complement rule only) or 'block'."""
        if not ctx.value(self.project) or not self.projector.eligible(p):
            return "full"
        if self.projector.whole_params:
            return "block"
        size = self._size(p, ctx)
        if size == 0:
            return "free"
        return "full" if size >= self.projector.full_size(p.shape) else "low"

    def _roles(self, params, ctx) -> tuple[str, ...]:
        """:meth:`_role` of each param: a function of its shape and the group's values, so worked out once per
        distinct shape, and remembered for the next steps of the same shapes and values."""
        density = None if self.rank is not None else ctx.value(self.density)
        key = (ctx.value(self.project), density, tuple(p.shape for p in params))
        memo = self.__dict__.setdefault("_role_memo", {})
        roles = memo.get(key)
        if roles is None:
            by_shape: dict = {}
            for p in params:
                if p.shape not in by_shape:
                    by_shape[p.shape] = self._role(p, ctx)
            if len(memo) >= 64:  # (a group whose density is scheduled would otherwise add a key each step)
                memo.clear()
            roles = memo[key] = tuple(by_shape[p.shape] for p in params)
        return roles

    def _shadow(self, p: Tensor, ctx) -> Tensor:
        """An uninitialised tensor with the shape the inner transform sees for ``p`` (allocation only)."""
        if self._role(p, ctx) == "low":
            return torch.empty(self.projector.low_shape(p.shape, self._size(p, ctx)), dtype=p.dtype, device=p.device)
        return p

    # -- state --------------------------------------------------------------------------------
    def init(self, params, ctx):
        roles = self._roles(params, ctx)
        n = len(params)
        state: dict[str, list] = {"inner_step": [None] * n}
        inner_ctx = StepContext(ctx.group, [0] * n)
        stateful = [i for i, r in enumerate(roles) if r in ("full", "low")]
        inner_state = self.inner.init([self._shadow(params[i], ctx) for i in stateful], inner_ctx)
        for key, values in nest("inner", inner_state).items():
            column = [None] * n
            for i, v in zip(stateful, values):
                column[i] = v
            state[key] = column
        # block mode: inner state exists only while a parameter is in the state-full block, so it is held
        # in a list (empty when inactive) whose layout the state_dict check does not fix
        probe = self.inner.init([torch.empty(1, device="meta")], StepContext(ctx.group, [0]))
        for key in nest("block", probe):
            state[key] = [[] if r == "block" else None for r in roles]
        for key in self.projector.state_kinds:
            state["proj." + key] = [None] * n
        state["seed"] = [None] * n
        if self.complement == "fira":
            state["residual_norm"] = [None] * n
        counter = ctx.group_state
        for i, (p, role) in enumerate(zip(params, roles)):
            if role != "free":
                state["inner_step"][i] = 0  # a plain int, like the optimizer's own step counters
            if role == "low":
                for key, value in self.projector.state(p, self._size(p, ctx)).items():
                    state["proj." + key][i] = value
                # a distinct id per parameter, kept in state: random subspaces resume identically
                state["seed"][i] = int(counter.get("next_id", 0))
                counter["next_id"] = counter.get("next_id", 0) + 1
                if self.complement == "fira":
                    state["residual_norm"][i] = torch.full((), _UNSET, dtype=torch.float32, device=p.device)
        return state

    def estimate_state(self, params, ctx):
        """The block state the first step creates (for ``gradkit.memory.estimate``); meta-safe."""
        roles = self._roles(params, ctx)
        blocks = [i for i, r in enumerate(roles) if r == "block"]
        if not blocks:
            return {}
        chosen = [blocks[j] for j in _choose_block([params[i].numel() for i in blocks],
                                                   float(ctx.value(self.density)), 0)]
        fresh = self.inner.init([params[i] for i in chosen], StepContext(ctx.group, [0] * len(chosen)))
        out = {}
        for key, values in fresh.items():
            column = [[] if r == "block" else None for r in roles]
            for i, v in zip(chosen, values):
                column[i] = [v]
            out["block." + key] = column
        return out

    def children(self):
        return {"inner": self.inner, "block": self.inner}

    def kind_of(self, key: str):
        label, rest = split_key(key)
        if label == "proj":
            if rest not in self.projector.state_kinds:
                raise KeyError(f"{type(self.projector).__name__} declares no kind for its state key {rest!r}")
            return as_kind(self.projector.state_kinds[rest])
        return super().kind_of(key)

    # -- the update -----------------------------------------------------------------------------
    def update(self, updates, state, params, ctx):
        roles = self._roles(params, ctx)
        period = int(ctx.value(self.update_freq))
        policy = ctx.value(self.state_policy)
        due = [(s - 1) % period == 0 for s in ctx.steps]
        inner_keys = list(unnest("inner", state))
        block_keys = list(unnest("block", state))
        proj_keys = list(unnest("proj", state))

        def proj_state(i):
            return {k: state["proj." + k][i] for k in proj_keys}

        low = [i for i, r in enumerate(roles) if r == "low"]
        refits = [i for i in low if due[i]]
        if refits:  # one multi-tensor fit (on accelerators, one batched SVD/QR per shape), then the state policy
            olds = [{k: v.clone() for k, v in proj_state(i).items()}
                    if (policy == "project" and ctx.steps[i] != 1) else None for i in refits]
            # only "keep" carries state across a change of basis, so only it depends on the basis vectors' signs
            self.projector.fit_many([updates[i] for i in refits], [proj_state(i) for i in refits],
                                    [self._generator(state, i, ctx) for i in refits], sign_free=policy != "keep")
            for i, old in zip(refits, olds):
                self._refit(i, updates[i], old, proj_state(i), state, inner_keys, policy, ctx)

        blocks = [i for i, r in enumerate(roles) if r == "block"]
        if blocks and any(due[i] for i in blocks):
            self._select_block(blocks, params, state, block_keys, policy, ctx)
        active = [i for i in blocks if state["block." + block_keys[0]][i]] if block_keys else []
        if not block_keys and blocks:  # a stateless inner transform: every block param is "active"
            active = list(blocks)

        # the inner (state-full) update over every parameter that has inner state, in one multi-tensor call
        stateful = [i for i, r in enumerate(roles) if r in ("full", "low")] + active
        low_states = self.projector.materialize([proj_state(i) for i in low])
        shapes = [params[i].shape for i in low]
        projected = dict(zip(low, self.projector.project_many([updates[i] for i in low], low_states)))
        inputs = [projected[i] if i in projected else updates[i] for i in stateful]
        for i in stateful:
            state["inner_step"][i] += 1
        inner_steps = [state["inner_step"][i] for i in stateful]
        lists = {}
        for key in set(inner_keys) | set(block_keys):
            lists[key] = [state["block." + key][i][0] if roles[i] == "block" else state["inner." + key][i]
                          for i in stateful]
        inner_ctx = StepContext(ctx.group, inner_steps, ctx.group_state.setdefault("inner", {}))
        passthrough = len(stateful) == len(params) and not low
        # the inner transform sees the real parameter where it updates a whole one, and its own input in a subspace
        inner_params = [inputs[j] if i in projected else params[i] for j, i in enumerate(stateful)]
        if stateful:
            out = self.inner.update(inputs, lists, inner_params, inner_ctx)
        for key, values in lists.items():  # the inner transform may have replaced its state tensors
            for i, v in zip(stateful, values):
                if roles[i] == "block":
                    state["block." + key][i][0] = v
                else:
                    state["inner." + key][i] = v
        if passthrough:
            # nothing projected this step: hand the inner update over unevaluated, so that the optimizer
            # applies it exactly as the inner optimizer alone would (same ops, same rounding)
            order = {i: j for j, i in enumerate(stateful)}
            perm = [order[i] for i in range(len(params))]
            return ctx.absorb(inner_ctx, out, order=perm)
        out = inner_ctx.materialize(out, inner_params) if stateful else []
        inner_out = dict(zip(stateful, out))

        result = list(updates)
        for i in stateful:
            result[i] = inner_out[i]
        scale = float(ctx.value(self.scale))
        # the complement G - P R reuses the projection R = P^T G; the state-full part is added to the complement
        # rule's output inside the back-projection (scale * P inner(R) + rule(C) in one addmm/baddbmm)
        residuals = None
        if low and self.complement != "none":
            residuals = self.projector.complement_many([updates[i] for i in low], [projected[i] for i in low],
                                                       low_states)
            if self.complement == "fira":
                self._fira_residuals(low, residuals, [projected[i] for i in low], [inner_out[i] for i in low],
                                     state, ctx)
            else:
                residuals = self._free_rule(residuals, ctx, owned=True)
        factors = None
        if low and residuals is None:  # GaLore: the update is the back-projection alone, left as a product that
            # the optimizer adds into the param inside the multiply (no param-sized update tensor)
            factors = self.projector.back_factors_many([inner_out[i] for i in low], low_states, shapes)
        if factors is not None:
            pending = {i: (left, right, shape) for i, (left, right), shape in zip(low, factors, shapes)}
            result = ctx.defer_products(result, pending)
            if scale != 1.0:  # pending too: the products' factor (other params have none, or zero updates)
                ctx.multiply(scale if len(stateful) == len(low) else [scale if r == "low" else 1.0 for r in roles])
        else:
            # the residuals are this step's own tensors: the back-projection accumulates into them in place
            backs = self.projector.back_many([inner_out[i] for i in low], low_states, shapes, scale=scale,
                                             add=residuals, into_add=True)
            for i, b in zip(low, backs):
                result[i] = b
        # parameters with no state-full part this step: the complement rule on the whole gradient
        free = [i for i, r in enumerate(roles) if r == "free" or (r == "block" and i not in active)]
        if free:
            grads = [updates[i] for i in free]
            if self.complement in ("sign", "sgd"):
                moved = self._free_rule(grads, ctx)
            else:  # GaLore and Fira have nothing to apply outside the subspace when it is empty
                moved = [torch.zeros_like(g) for g in grads]
            for i, m in zip(free, moved):
                result[i] = m
        return result  # borrowed: entries may alias gradients or inner state

    def _free_rule(self, tensors: list[Tensor], ctx, owned: bool = False) -> list[Tensor]:
        """sign / identity times ``free_scale``; ``owned``: the tensors are temporaries, rewritten in place."""
        factor = float(ctx.value(self.free_scale))
        if owned:
            if self.complement == "sign":
                torch._foreach_sign_(tensors)
            if factor != 1.0:
                torch._foreach_mul_(tensors, factor)
            return tensors
        out = torch._foreach_sign(tensors) if self.complement == "sign" else list(tensors)
        if factor != 1.0:
            out = torch._foreach_mul(out, factor)
        return out  # may alias the input: callers never write into it

    def _fira_residuals(self, low, residuals, projected, adapted, state, ctx):
        """Fira: scale the residual by ||psi(R)|| / ||R|| per row/column, then limit its norm growth."""
        gamma = float(ctx.value(self.limiter))
        if self.projector.applies_to == "any":  # coordinate subspace: one factor for the whole tensor
            ratio = torch.stack(torch._foreach_norm(adapted)) / (torch.stack(torch._foreach_norm(projected)) + 1e-8)
            factors = list(ratio.unbind(0))
        else:  # one factor per row of R (m x r, right projection) or per column (r x n, left): off the CPU
            factors = [None] * len(residuals)  # same-shape matrices share one stacked norm
            for idx in stacking_batches(projected, [res.shape for res in residuals]):
                shape = residuals[idx[0]].shape
                m, n = shape[0], residuals[idx[0]].numel() // max(shape[0], 1)
                axis = 2 if m >= n else 1
                a = stacked([adapted[j] for j in idx])
                r = stacked([projected[j] for j in idx])
                ratio = norms_over(a, axis) / (norms_over(r, axis) + 1e-8)
                target = (m,) + (1,) * (len(shape) - 1) if m >= n else shape[1:]
                for j, f in zip(idx, ratio.unbind(0)):
                    factors[j] = f.reshape(target)
        torch._foreach_mul_(residuals, factors)
        # the limiter on every matrix at once: one vector of norms, no per-matrix scalar ops
        norms = torch.stack(torch._foreach_norm(residuals))
        prev = [state["residual_norm"][i] for i in low]
        last = torch.stack(prev)
        ratio = norms / (last + 1e-8)
        limit = torch.where(last < 0, torch.ones_like(ratio), torch.clamp(ratio, min=gamma) / gamma)
        torch._foreach_div_(residuals, list(limit.unbind(0)))
        torch._foreach_copy_(prev, list((norms / limit).unbind(0)))

    def _generator(self, state, i, ctx) -> torch.Generator:
        seed = _mix(int(ctx.value(self.seed)), int(state["seed"][i]), ctx.steps[i])
        return torch.Generator().manual_seed(seed)

    def _refit(self, i, grad, old, pstate, state, inner_keys, policy, ctx):
        """What the inner state does now that parameter ``i``'s subspace moved from ``old`` to ``pstate``."""
        first = ctx.steps[i] == 1
        if first or policy == "keep":
            return
        if policy == "reset":
            for key in inner_keys:
                value = state["inner." + key][i]
                if value is not None:
                    value.zero_()
            state["inner_step"][i] = 0
            return
        shape = grad.shape
        transition = self.projector.transition(old, pstate)
        for key in inner_keys:
            value = state["inner." + key][i]
            if value is None or not value.is_floating_point():
                continue
            squared = self.inner.kind_of(key).non_negative  # second moments stay non-negative
            if transition is not None:
                t = transition * transition if squared else transition
                m, n = matrix_shape(shape)
                mapped = value @ t.T if m >= n else t @ value  # right: coordinates are columns of G Q^T
            else:  # a coordinate-like subspace: back into the full space and into the new coordinates
                mapped = self.projector.project(self.projector.back(value, old, shape), pstate)
            if squared:
                mapped.clamp_(min=0)
            value.copy_(mapped)

    def _select_block(self, blocks, params, state, block_keys, policy, ctx):
        """Make the next parameters state-full, cycling through the group (see :func:`_choose_block`).

        A parameter that leaves the block loses its state (freed); one that enters starts from fresh state;
        one that stays keeps it (for a whole parameter the subspace did not change, whatever the policy).
        """
        cursor = int(ctx.group_state.get("block_cursor", 0)) % len(blocks)
        picked = _choose_block([params[i].numel() for i in blocks], float(ctx.value(self.density)), cursor)
        chosen = {blocks[j] for j in picked}
        ctx.group_state["block_cursor"] = (cursor + len(picked)) % len(blocks)
        if not block_keys:
            return
        for i in blocks:
            held = state["block." + block_keys[0]][i]
            if i not in chosen:
                for key in block_keys:
                    state["block." + key][i].clear()  # frees the memory
                continue
            if held:
                continue  # its subspace (the whole parameter) did not change: the state carries on
            fresh = self.inner.init([params[i]], StepContext(ctx.group, [0]))
            for key in block_keys:
                state["block." + key][i][:] = [fresh[key][0]]
            state["inner_step"][i] = 0


project_split = ProjectedSplit
