"""``gradkit.Optimizer``: a ``torch.optim.Optimizer`` whose step is a chain of gradient transforms.

One step, per param group: gather the params that have a gradient, check the gradients (the
``nonfinite`` policy), run the chain once over the whole list (multi-tensor), and add the result to
the params with one foreach op. Params without a gradient are skipped and their state is untouched.

What a step guarantees (tests: tests/core/test_optimizer.py, tests/core/test_fuzz.py):

- Everything that depends on the caller is checked before anything is written: each gradient's shape,
  dtype, device and layout against its param, the param groups' hyperparameters (again whenever one
  changed since the last step, e.g. ``group["lr"] = ...``), the non-finite policy. A step refused there
  changes nothing.
- Step counters advance only after every group's chain has run, and params are written only after
  every group's chain has run (one apply phase at the end; with several param groups the groups' pending
  updates are therefore alive together until then, where they used to be one group's at a time).
- An exception from inside a chain (out of memory, a bug, an interrupt) therefore leaves params and
  step counters unchanged; state tensors that the chain updates in place may already hold the new
  moments, and the exception says so. ``transactional=True`` also restores them: the step first copies
  the state (and params) it is about to touch, and puts the copies back on any exception, so a failed
  step changes nothing at all. The copy costs one read and write of the state per step
  (``benchmarks/transactional_step.py`` measures it), which is why it is not the default.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict, defaultdict
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from gradkit.core.accounting import state_bytes
from gradkit.core.context import StepContext
from gradkit.core.fused import FusedGroup, FusedStep
from gradkit.core.prediction import predicted_weights
from gradkit.core.redistribute import owner_plan, step_on_owners
from gradkit.core.sharding import (Shards, chain_reach, check_shardable, check_zero_redundancy, dtensor_type,
                                   is_sharded, local, rewrap, runs_on_shards, walk)
from gradkit.core.state import ELEMENTWISE
from gradkit.core.rounding import Rounding
from gradkit.core.storage import MODES, StateStorage, flag_names, restore_slice
from gradkit.core.state_dict import (FORMAT, META_KEY, check_group_states, check_state_dict, dtype_as_text,
                                     expected_state, fixed_lists, group_meta, lists_from_fixed)
from gradkit.core.transform import Chain, GradientTransform
from gradkit.core.hyper import is_number

__all__ = ["Optimizer", "NONFINITE_POLICIES"]

NONFINITE_POLICIES = ("raise", "skip", "ignore")
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_GROUP_ONLY = ("params", "param_names", META_KEY)
_CHUNKS_NOTE = ("gradkit: the step failed in a chunk of a param group with compressed state; the params before "
                "that chunk (in group order; for a large param, its rows before that slice) were already stepped "
                "and their state updated. Set "
                "optimizer.transactional = True to have a failed step restore them.")
_PARTIAL_NOTE = ("gradkit: the step failed inside the optimizer's chain. Params and step counters are unchanged; "
                 "state tensors the chain updates in place may already hold this step's values. Construct the "
                 "optimizer with transactional=True to have a failed step restore them too.")


class Optimizer(torch.optim.Optimizer):
    """An optimizer defined by a gradient transformation.

    Args:
        params: iterable of parameters, of (name, parameter) pairs, or of param-group dicts.
        transform: a :class:`GradientTransform`, usually a :func:`chain`. Its output is *added* to the
            params, so the chain ends with a negative scale such as ``scale_by_learning_rate()``.
        defaults: default hyperparameters of each param group (what ``hp("key")`` references read).
        nonfinite: what a step does when a gradient holds inf or nan: ``"raise"`` (default) raises
            ``FloatingPointError``; ``"skip"`` leaves params and state exactly as they were and counts
            the step in ``skipped_steps``; ``"ignore"`` does not check (no extra pass, no host sync).
        state_dtype: dtype of floating-point state. ``None`` (default) keeps float32 state (and does the
            arithmetic in float32) for float16/bfloat16 params and the param's dtype otherwise. A text
            ``"float32" | "bfloat16" | "bfloat16+ecc" | "int8" | "int4"`` (or a
            :class:`~gradkit.core.storage.StateStorage` for block size, minimum size and kinds) keeps the
            arithmetic as for ``None`` but stores first and second moments compressed between steps
            (:mod:`gradkit.core.storage`).
        param_rounding: ``"nearest"`` (default) or ``"stochastic"``: how the update is written into
            float16/bfloat16 params (:mod:`gradkit.core.rounding`; ``seed`` seeds it).
        fused: ``True`` compiles the whole step (every param group) into one program with
            ``torch.compile`` (:mod:`gradkit.core.fused`): each tensor's update is one loop over memory
            instead of one pass per op. Needs a fused form in every transform of the chain
            (``ValueError`` naming those without one) and every param on one device. The first step
            compiles (seconds); the results agree with the unfused step to float rounding and the
            state_dict is the same.
        transactional: ``True`` makes every step all-or-nothing even for exceptions raised inside the
            chain: the state and params the step touches are copied first and restored on failure (one
            extra read and write of them per step). ``False`` (default) guarantees it for every failure
            caused by the inputs, which are checked before anything is written (see the module docstring).

    Params must be real floating-point tensors (complex and integer params are refused; for complex
    ones, optimize ``torch.view_as_real(p)`` as a real parameter). Params with no elements are skipped
    (there is nothing to update, and they get no state).

    Example::

        opt = gradkit.Optimizer(model.parameters(),
                                gradkit.chain(gradkit.clip_by_global_norm(1.0),
                                              gradkit.scale_by_adam(),
                                              gradkit.scale_by_learning_rate()),
                                defaults={"lr": 1e-3})
    """

    def __init__(
        self,
        params: Iterable[Any],
        transform: GradientTransform,
        defaults: dict[str, Any] | None = None,
        *,
        nonfinite: str = "raise",
        state_dtype: torch.dtype | None = None,
        fused: bool = False,
        transactional: bool = False,
        param_rounding: str = "nearest",
        seed: int = 0,
    ):
        if not isinstance(transform, GradientTransform):
            raise TypeError(f"transform must be a GradientTransform (e.g. gradkit.chain(...)), got {type(transform).__name__}")
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
        self.storage = StateStorage.of(state_dtype)
        if self.storage is not None:
            state_dtype = None
        if state_dtype is not None and not (isinstance(state_dtype, torch.dtype) and state_dtype.is_floating_point):
            raise ValueError(f"state_dtype must be None, a floating-point torch.dtype or one of {MODES}, "
                             f"got {state_dtype!r}")
        self.set_param_rounding(param_rounding, seed)
        if not isinstance(fused, bool):
            raise ValueError(f"fused must be True or False, got {fused!r}")
        self.transform = transform if isinstance(transform, Chain) else Chain(transform)
        self._fused_step: FusedStep | None = FusedStep(self.transform) if fused else None
        self.nonfinite = nonfinite
        self.state_dtype = state_dtype
        self.transactional = transactional
        self.skipped_steps = 0
        self.group_states: list[dict] = []
        self._checked: dict[int, tuple] = {}  # id(group) -> (group, hyperparameters last validated, plain group)
        super().__init__(params, dict(defaults or {}))
        check_zero_redundancy(self.transform, self.param_groups)

    # -- groups ------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        param_group = dict(param_group)
        params = param_group.get("params")
        params = [params] if isinstance(params, Tensor) else params
        if isinstance(params, (set, dict)) or params is None:
            raise TypeError("params must be an ordered collection of tensors (a set's order changes between runs), "
                            f"got {type(params).__name__}")
        param_group["params"] = params = list(params)
        _check_params(params)
        candidate = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        self.validate_group(candidate)  # before the group is added: a bad group leaves nothing behind
        super().add_param_group(param_group)
        self.group_states.append({})
        self._link_group_states()  # a "gradkit" key the caller's dict carried (another optimizer's groups) is replaced

    def _link_group_states(self) -> None:
        """Each live param group carries its group-level state under ``"gradkit"`` (the same dict as
        ``group_states[i]``): code that copies param-group keys from one optimizer to another, as
        ``ZeroRedundancyOptimizer`` does between itself and its local optimizer (and so into and out of
        its state_dict), carries the group-level state with the hyperparameters."""
        for group, group_state in zip(self.param_groups, self.group_states):
            group[META_KEY] = group_state

    def _adopt_group_states(self) -> None:
        """Take over group-level state put into ``param_groups[i]["gradkit"]`` from outside (a
        ``ZeroRedundancyOptimizer.load_state_dict``), checked like a loaded state_dict's and copied so that
        the state_dict it came from is not changed by later steps; nothing changes if it is refused. The
        same load puts each param's saved state into ``state`` as it is: per-param lists saved in their
        fixed form (:func:`~gradkit.core.state_dict.fixed_lists`) are turned back into lists."""
        given = [group.get(META_KEY, own) for group, own in zip(self.param_groups, self.group_states)]
        if all(g is own for g, own in zip(given, self.group_states)):
            for group, own in zip(self.param_groups, self.group_states):
                group.setdefault(META_KEY, own)  # a group dict rebuilt without it keeps its state
            return
        group_states = check_group_states(self, given, "param_groups[{}]['gradkit']")
        states = {p: lists_from_fixed(f"state of param {j} of group {i}", self.state[p])
                  for i, group in enumerate(self.param_groups) for j, p in enumerate(group["params"]) if p in self.state}
        self.group_states = group_states
        self._link_group_states()
        self.state.update(states)

    @property
    def transactional(self) -> bool:
        """Whether a step that fails inside the chain restores state and params (settable on any recipe:
        ``opt.transactional = True``)."""
        return self._transactional

    @transactional.setter
    def transactional(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"transactional must be True or False, got {value!r}")
        self._transactional = value

    def set_param_rounding(self, mode: str, seed: int = 0) -> None:
        """How updates are written into float16/bfloat16 params, on any recipe: ``"nearest"`` or
        ``"stochastic"`` (seeded by ``seed`` and the step counts, :mod:`gradkit.core.rounding`)."""
        rounding = Rounding.of(mode, seed)
        if rounding is not None and getattr(self, "_fused_step", None) is not None:
            raise ValueError("param_rounding='stochastic' is applied by the unfused step only; use fused=False")
        self.rounding = rounding

    @property
    def fused(self) -> bool:
        return self._fused_step is not None

    # -- the step -----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        if torch.compiler.is_compiling():
            # Traced by torch.compile, every changed float hyperparameter (an LR scheduler's lr) would
            # compile the step again; the step runs eagerly instead, and fused=True is the compiled step.
            return _eager_step(self, closure)
        return self._step(closure)

    def _step(self, closure: Callable[[], Any] | None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._adopt_group_states()
        work = self._gather()
        if not work:
            return loss
        if self.nonfinite != "ignore" and not grads_finite([w[3] for w in work]):
            if self.nonfinite == "raise":
                raise FloatingPointError(
                    "a gradient holds inf or nan; params and state are unchanged "
                    "(pass nonfinite='skip' to skip such steps, or 'ignore' to not check)"
                )
            self.skipped_steps += 1
            return loss
        saved = self._save(work) if self.transactional else None
        try:
            if self._fused_step is not None:
                self._step_fused(work)
            else:
                self._step_unfused(work)
        except BaseException as error:
            if saved is not None:
                self._restore(saved)
            elif hasattr(error, "add_note") and _CHUNKS_NOTE not in getattr(error, "__notes__", ()):
                error.add_note(_PARTIAL_NOTE)
            raise
        for _, _, params, _ in work:  # counters advance once the whole step has succeeded
            for p in params:
                self.state[p]["step"] += 1
        return loss

    def _gather(self) -> list:
        """Each group's (index, hyperparameters, params with a gradient, their gradients), after checking
        everything a step reads from the caller; nothing is written before this returns."""
        work = []
        for index, group in enumerate(self.param_groups):
            plain = self._check_group(index, group)
            params = [p for p in group["params"] if p.grad is not None and p.numel()]
            if not params:
                continue
            grads = [p.grad for p in params]
            self._check_sparse(grads)
            bad = [j for j, (p, g) in enumerate(zip(params, grads))
                   if g.shape != p.shape or g.dtype != p.dtype or g.device != p.device]
            if bad:
                p, g = params[bad[0]], grads[bad[0]]
                raise ValueError(
                    f"param group {index}: a gradient does not match its param (grad {tuple(g.shape)} {g.dtype} on "
                    f"{g.device}, param {tuple(p.shape)} {p.dtype} on {p.device}); params and state are unchanged")
            if is_sharded(params):
                check_shardable(self.transform, index, group, params)
                if self.storage is not None:
                    raise ValueError(f"param group {index}: state_dtype={self.storage.mode!r} (compressed state) is "
                                     "not supported for sharded (DTensor) params; params and state are unchanged")
            work.append((index, plain, params, grads))
        return work

    def _check_group(self, index: int, group: dict) -> dict:
        """Validate a group's hyperparameters again when they changed since they were last validated;
        return the group as the transforms read it (:func:`_plain_numbers`), kept with the verdict."""
        seen = _fingerprint(group)
        checked = self._checked.get(id(group))
        if checked is not None and checked[0] is group and checked[1] == seen:
            return checked[2]
        try:
            self.validate_group(group)
        except (TypeError, ValueError) as error:
            raise type(error)(f"param group {index}: {error}; params and state are unchanged") from None
        plain = _plain_numbers(group)
        self._checked[id(group)] = (group, seen, plain)
        return plain

    def validate_group(self, group: dict) -> None:
        """Raise ``TypeError``/``ValueError`` naming the first bad hyperparameter of ``group``: the chain's
        validators, and where a default is a number a number (no text or bools where it is a tuple of
        numbers), even for keys this group's chain does not read (FRUGAL's ``momentum`` with an AdamW
        inner)."""
        for key, default in self.defaults.items():
            if key in group and _bad_for_default(group[key], default):
                value = group[key]
                raise TypeError(f"{key} must be given in numbers like its default {default!r}, "
                                f"got {type(value).__name__} {value!r}")
            if key in group and _numbers_tuple(default) and not _same_length(group[key], default):
                raise ValueError(f"{key} must be {len(default)} numbers like its default {default!r}, "
                                 f"got {group[key]!r}")
            if key in group and _is_plain_number(default) and math.isnan(float(group[key])):
                raise ValueError(f"{key} must be a number like its default {default!r}, got nan")
        self.transform.validate(group)

    def _check_sparse(self, grads: list[Tensor]) -> None:
        if not self.transform.supports_sparse and any(g.is_sparse for g in grads):
            names = [type(t).__name__ for t in self.transform.transforms if not t.supports_sparse]
            raise TypeError(f"sparse gradients are not supported by {', '.join(names)}; use dense gradients "
                            "(e.g. nn.Embedding(sparse=False))")

    def compute_dtype(self, p: Tensor) -> torch.dtype:
        """The dtype the transforms compute in (and keep state in) for param ``p``."""
        if self.state_dtype is not None and p.is_floating_point():
            return self.state_dtype
        return torch.float32 if p.dtype in _LOW_PRECISION else p.dtype

    def _step_unfused(self, work: list) -> None:
        """Every group's chain first, then every group's params: a chain that fails writes no param."""
        applies = [self._run_chain(group, self.group_states[index], params, grads)
                   for index, group, params, grads in work]
        for apply in applies:
            apply()

    def _run_chain(self, group: dict, group_state: dict, params: list[Tensor], grads: list[Tensor]) -> Callable[[], None]:
        upcast = [i for i, p in enumerate(params) if self.compute_dtype(p) != p.dtype]
        params_c, grads_c = params, grads
        if upcast:  # mixed precision: the chain works on copies in the state dtype
            params_c, grads_c = list(params), list(grads)
            for i in upcast:
                dtype = self.compute_dtype(params[i])
                params_c[i] = params[i].to(dtype)
                grads_c[i] = grads[i].to(dtype)

        if is_sharded(params) and (plan := owner_plan(self.transform, params)) is not None:
            # whole matrices stepped on owner ranks (core/redistribute.py), their state held by the owner
            return step_on_owners(self, group, group_state, params, params_c, grads_c, plan)
        if self._in_chunks(group, params):
            self._run_chunks(group, group_state, params, params_c, grads_c, upcast)
            return lambda: None
        states, lists = self._state_lists(group, group_state, params, params_c)
        # plain ints: a foreach op over 0-dim tensors costs more than the loop
        ctx = StepContext(group, [s["step"] + 1 for s in states], group_state)
        sharded_lists, sharded_params = None, params
        if self._on_local_shards(params, ctx):
            # each rank steps its shards (core/sharding.py); the state stays DTensor in self.state
            params, params_c, grads_c = local(params), local(params_c), local(grads_c)
            sharded_lists, lists = lists, {k: local(values) for k, values in lists.items()}
        updates = self.transform.update(grads_c, lists, params_c, ctx)
        commit = None
        if self.storage is not None:  # check the working state can be stored, encode it once applied
            commit = self.storage.prepare(states, lists, self.transform.kind_of)
            lists = {}
        for k, values in lists.items():  # transforms may replace state tensors in their lists
            if sharded_lists is not None:
                originals = sharded_lists[k]
                values = [rewrap(v, h, o, p) for v, h, o, p in zip(values, local(originals), originals, sharded_params)]
            for s, v in zip(states, values):
                if v is not None:
                    s[k] = v

        def apply() -> None:
            self._apply(ctx, params, params_c, updates, upcast, states)
            if commit is not None:
                commit()

        return apply

    def _apply(self, ctx: StepContext, params: list[Tensor], params_c: list[Tensor], updates: list[Tensor],
               upcast: list[int], states: list[dict]) -> None:
        ctx.apply(params_c, updates)
        if upcast:
            targets = local([params[i] for i in upcast])
            sources = local([params_c[i] for i in upcast])
            if self.rounding is not None:
                sources = self.rounding.round(sources, targets[0].dtype, [states[i]["step"] for i in upcast])
            torch._foreach_copy_(targets, sources)

    def _in_chunks(self, group: dict, params: list[Tensor]) -> bool:
        """Whether a group with compressed state is stepped a chunk of params at a time
        (:meth:`StateStorage.chunks`): only where no statistic spans the group's params and no group-level
        state is kept (each chunk runs the chain once), and where gradients were checked finite (a chunk
        that fails after others were stepped leaves those stepped; with ``nonfinite="ignore"`` a non-finite
        gradient is expected input, and the unchunked step keeps all-or-nothing)."""
        if self.storage is None or self.nonfinite == "ignore" or is_sharded(params):
            return False
        if sum(p.numel() for p in params) <= self.storage.chunk_elements:
            return False
        return not any(t.group_state_keys or t.spans_params(group) for t in walk(self.transform))

    def _run_chunks(self, group: dict, group_state: dict, params: list[Tensor], params_c: list[Tensor],
                    grads_c: list[Tensor], upcast: list[int]) -> None:
        """Decode, step, encode and apply one chunk of params after another: the working state of a chunk
        (float32, transient) is small enough to stay in cache and to be reused by the next chunk's
        allocations, where a whole group's would be faulted in afresh at every step."""
        stepped = False
        sliceable = chain_reach(self.transform) == ELEMENTWISE and self.rounding is None
        try:
            for chunk in self.storage.chunks([p.numel() for p in params]):
                one = chunk[0]
                slices = (self._slices(group, group_state, params[one]) if sliceable and len(chunk) == 1
                          and one not in upcast and not grads_c[one].is_sparse else None)
                if slices is not None:
                    for rows in slices:
                        self._step_slice(group, group_state, params[one], grads_c[one], rows)
                        stepped = True
                    continue
                sub_params, sub_params_c = [params[i] for i in chunk], [params_c[i] for i in chunk]
                states, lists = self._state_lists(group, group_state, sub_params, sub_params_c)
                self._step_unit(group, group_state, states, lists, sub_params, sub_params_c,
                                [grads_c[i] for i in chunk], [j for j, i in enumerate(chunk) if i in upcast])
                stepped = True
        except BaseException as error:
            if stepped and hasattr(error, "add_note"):
                error.add_note(_CHUNKS_NOTE)  # in place of _PARTIAL_NOTE, which _step adds otherwise
            raise

    def _slices(self, group: dict, group_state: dict, param: Tensor) -> list[tuple[int, int]] | None:
        """The row slices a param larger than a chunk is stepped in under an elementwise chain
        (:meth:`StateStorage.row_slices`: the working tensors of one slice stay in cache where the whole
        param's would not), or None where its state does not allow slicing."""
        states, _ = self._state_lists(group, group_state, [param], [param], decode=False)
        return self.storage.row_slices(states[0], param.shape)

    def _step_slice(self, group: dict, group_state: dict, param: Tensor, grad: Tensor, rows: tuple[int, int]) -> None:
        """Decode, step, encode and apply rows ``[r0, r1)`` of ``param`` and of its state."""
        views = self.storage.state_slice(self.state[param], param.shape, rows)
        sliced = dict(views)
        part = param[rows[0]:rows[1]]
        lists = self.storage.unpack([sliced], self.transform.kind_of, [self.compute_dtype(param)])
        self._step_unit(group, group_state, [sliced], lists, [part], [part], [grad[rows[0]:rows[1]]], [])
        restore_slice(views, sliced)

    def _step_unit(self, group: dict, group_state: dict, states: list[dict], lists: dict, params: list[Tensor],
                   params_c: list[Tensor], grads_c: list[Tensor], upcast: list[int]) -> None:
        """Step a chunk (or slice) whose compressed state ``lists`` holds decoded, then encode it once applied."""
        ctx = StepContext(group, [s["step"] + 1 for s in states], group_state)
        updates = self.transform.update(grads_c, lists, params_c, ctx)
        commit = self.storage.prepare(states, lists, self.transform.kind_of)
        self._apply(ctx, params, params_c, updates, upcast, states)
        commit()

    def _on_local_shards(self, params: list[Tensor], ctx: StepContext) -> bool:
        """Whether the chain runs on the local shards of these (DTensor) params: elementwise math needs no
        communication, and ``shard_aware`` reductions complete their sums over the mesh through
        ``ctx.shards``, set here."""
        if not is_sharded(params) or not runs_on_shards(self.transform):
            return False
        ctx.shards = Shards.of(params)
        return ctx.shards is not None or chain_reach(self.transform) == ELEMENTWISE

    def _step_fused(self, work: list) -> None:
        """Every group's step in one compiled program (:mod:`gradkit.core.fused`)."""
        groups = []
        for index, group, params, grads in work:
            dtypes = [self.compute_dtype(p) for p in params]
            states, lists = self._state_lists(group, self.group_states[index], params, decode=False)
            stored = None
            if self.storage is not None:  # the program decodes and re-encodes the stored state itself
                lists, stored = self.storage.stored_entries(states, self.transform.kind_of, dtypes)
            groups.append(FusedGroup(group, params, grads, lists, [s["step"] + 1 for s in states], dtypes, stored))
        names = flag_names([g.stored for g in groups])
        self._fused_step(groups, check=lambda ok: self.storage.check_flags(ok, names))

    def _save(self, work: list):
        """What a transactional step may change: the params it steps, their state, the group states."""
        params = [p for _, _, group_params, _ in work for p in group_params]
        values = [p.detach().clone() for p in params]
        states = {p: _cloned(self.state[p]) if p in self.state else None for p in params}
        return params, values, states, copy.deepcopy(self.group_states)

    def _restore(self, saved) -> None:
        params, values, states, group_states = saved
        torch._foreach_copy_(local([p.detach() for p in params]), local(values))
        for p, state in states.items():
            if state is None:
                self.state.pop(p, None)
            else:
                self.state[p] = state
        self.group_states = group_states
        self._link_group_states()

    def _state_lists(self, group: dict, group_state: dict, params: list[Tensor], params_c: list[Tensor] | None = None,
                     decode: bool = True):
        """Each param's state dict (initialised on the first step from the param in its compute dtype:
        ``params_c`` when the caller has it) and the state as ``{key: [tensor or None per param]}``
        (``decode=False``: the stored entries undecoded)."""
        states = [self.state[p] for p in params]
        new = [i for i, s in enumerate(states) if "step" not in s]
        if new:
            init = [params_c[i] if params_c is not None else params[i].to(self.compute_dtype(params[i])) for i in new]
            self._init_state(group, group_state, init, [states[i] for i in new])
            if self.storage is not None:
                # stored from the start, so that the first step reads the form every later one does (the
                # fused program is traced once)
                fresh = [states[i] for i in new]
                self.storage.pack(fresh, {k: [s.get(k) for s in fresh] for k in set().union(*fresh) - {"step"}},
                                  self.transform.kind_of)
        if not decode:
            return states, {k: [s.get(k) for s in states] for k in sorted(set().union(*states) - {"step"})}
        if self.storage is not None:  # decode the stored state into working tensors (core/storage.py)
            return states, self.storage.unpack(states, self.transform.kind_of, [self.compute_dtype(p) for p in params])
        keys = sorted(set().union(*states) - {"step"})
        return states, {k: [s.get(k) for s in states] for k in keys}

    def _init_state(self, group: dict, group_state: dict, params: list[Tensor], states: list[dict]) -> None:
        ctx = StepContext(group, [0] * len(params), group_state)
        for key, values in self.transform.init(params, ctx).items():
            for s, v in zip(states, values):
                if v is not None:
                    s[key] = v
        for s in states:
            s["step"] = 0

    # -- copying and pickling ---------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # torch.optim.Optimizer keeps only defaults, state and param_groups; the recipe is needed too.
        # A fused optimizer is rebuilt with fresh (uncompiled) programs.
        return {**super().__getstate__(), "transform": self.transform, "nonfinite": self.nonfinite,
                "state_dtype": self.state_dtype, "skipped_steps": self.skipped_steps,
                "group_states": self.group_states, "fused": self.fused, "_transactional": self.transactional,
                "storage": self.storage, "rounding": self.rounding}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        fused = state.pop("fused", False)
        state.setdefault("_transactional", False)
        state.setdefault("storage", None)
        state.setdefault("rounding", None)
        super().__setstate__(state)
        self._fused_step = FusedStep(self.transform) if fused else None
        self._checked = {}
        self._link_group_states()

    # -- weight prediction ----------------------------------------------------------------------
    def predicted_weights(self, steps: float = 1):
        """Context manager: inside it the params hold the weights ``steps`` updates ahead, as the chain's
        current state predicts them (:mod:`gradkit.core.prediction`; XGrad); the real weights are
        restored exactly on exit. Raises ``TypeError`` for a chain that cannot predict its update."""
        if self.storage is not None and self.storage.mode != "float32":
            raise TypeError(f"weight prediction reads the state as computed; state_dtype={self.storage.mode!r} keeps "
                            "it compressed (use state_dtype=None or 'float32')")
        return predicted_weights(self.transform, self.param_groups, self.state, steps, self.compute_dtype)

    # -- accounting ---------------------------------------------------------------------------
    def state_bytes(self, by: str | None = None):
        """Bytes of optimizer state; ``by="param" | "key" | "kind"`` breaks the total down."""
        return state_bytes(self, by=by)

    # -- state_dict -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """torch.optim's state_dict plus gradkit's own state (recipe, group-level state, counters).

        The gradkit state is written twice: as the top-level ``"gradkit"`` entry, and inside each param
        group's entry (``param_groups[i]["gradkit"]``, that group's share), because
        ``torch.distributed.checkpoint`` and ``ZeroRedundancyOptimizer`` rebuild a state_dict from
        ``state`` and ``param_groups`` only. A per-param list of state (FRUGAL's block state) is written as
        a tensor and its length (:func:`gradkit.core.state_dict.fixed_lists`), so that the keys and shapes
        do not depend on the step. State-dict pre- and post-hooks run as in torch.optim; post hooks see
        the complete dict.
        """
        pre, post = self._optimizer_state_dict_pre_hooks, self._optimizer_state_dict_post_hooks
        for hook in pre.values():
            hook(self)
        self._optimizer_state_dict_pre_hooks, self._optimizer_state_dict_post_hooks = OrderedDict(), OrderedDict()
        try:
            sd = super().state_dict()
        finally:
            self._optimizer_state_dict_pre_hooks, self._optimizer_state_dict_post_hooks = pre, post
        sd[META_KEY] = {
            "format": FORMAT,
            "recipe": type(self).__qualname__,
            "transform": self.transform.signature(),
            "group_states": self.group_states,
            "skipped_steps": self.skipped_steps,
        }
        for group, group_state in zip(sd["param_groups"], self.group_states):
            group.update({k: dtype_as_text(v) for k, v in group.items()})
            group[META_KEY] = group_meta(sd[META_KEY], group_state)
        fixed_lists(self, sd["state"])
        for hook in post.values():
            result = hook(self, sd)
            if result is not None:
                sd = result
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state_dict saved by the same recipe, all or nothing.

        Everything is checked first (:mod:`gradkit.core.state_dict`: structure, hyperparameters through
        the construction validators, every state entry against what this optimizer's ``init`` builds,
        counters, the group-level state); a bad state_dict raises one ``ValueError`` or ``TypeError``
        naming its first bad entry and leaves the optimizer exactly as it was. Floating-point state of
        another floating dtype is cast to the param's compute dtype, as torch.optim casts it.

        Also accepted: a state_dict whose gradkit state travels only inside its param groups (what
        ``torch.distributed.checkpoint.state_dict.get_optimizer_state_dict`` returns, param ids may be
        names), and a ``torch.optim.Adam``/``AdamW``/``SGD`` state_dict loaded into gradkit's ``Adam``/
        ``AdamW``/``SGD`` (:func:`gradkit.core.state_dict.from_torch_optim`). Load-state-dict pre-hooks
        (which may return a replacement dict) and post-hooks run as in torch.optim.
        """
        if isinstance(state_dict, dict):
            state_dict = state_dict.copy()  # shallow, as torch.optim does, so that pre-hooks may edit it
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        loaded = check_state_dict(self, state_dict)
        self.param_groups = loaded.param_groups
        self.state = defaultdict(dict, loaded.state)
        self.group_states = loaded.group_states
        self._link_group_states()
        self.skipped_steps = loaded.skipped_steps
        self._checked = {}
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)

    def _expected_state(self, groups: list[dict]) -> dict[Tensor, dict[str, Any]]:
        """What ``init`` would create for each param, computed on the meta device (no memory)."""
        return expected_state(self, groups)[0]


@torch.compiler.disable
def _eager_step(optimizer: Optimizer, closure: Callable[[], Any] | None) -> Any:
    """``optimizer.step`` called from code that ``torch.compile`` traces: run eagerly (a graph break)."""
    if optimizer.fused:
        raise RuntimeError("this optimizer was built with fused=True, which compiles its step itself: call "
                           "optimizer.step() outside torch.compile")
    with torch.no_grad():
        return optimizer._step(closure)


def _check_params(params: list) -> None:
    """Refuse params a step could not handle, before the group is added."""
    for item in params:
        p = item[1] if isinstance(item, tuple) and len(item) == 2 else item
        if not isinstance(p, Tensor):
            continue  # torch.optim's own check names what it got
        if p.is_complex():
            raise TypeError(f"params must be real floating-point tensors, got a complex param {tuple(p.shape)} "
                            f"{p.dtype}: optimize torch.view_as_real(param) as a real parameter instead")
        if not p.is_floating_point():
            raise TypeError(f"params must be floating-point tensors, got {tuple(p.shape)} {p.dtype}")


def _is_plain_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _bad_for_default(value: Any, default: Any) -> bool:
    """A number's place holds a non-number, or a tuple of numbers' place holds text or bools."""
    if _is_plain_number(default):
        return not is_number(value)
    if _numbers_tuple(default):
        return _has_text_or_bool(value)
    return False


def _numbers_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and bool(value) and all(is_number(v) for v in value)


def _same_length(value: Any, default: tuple) -> bool:
    """A tuple-of-numbers hyperparameter (``betas``) is a sequence as long as its default, not one number."""
    return isinstance(value, (tuple, list)) and len(value) == len(default)


def _has_text_or_bool(value: Any) -> bool:
    if isinstance(value, (str, bool)):
        return True
    return isinstance(value, (tuple, list)) and any(_has_text_or_bool(v) for v in value)


def _fingerprint(group: dict) -> tuple:
    return tuple((k, v if type(v) in _ATOMIC else _frozen(v)) for k, v in group.items() if k not in _GROUP_ONLY)


_ATOMIC = frozenset((float, int, bool, str, type(None)))  # values that are their own fingerprint


def _frozen(value: Any) -> Any:
    """A value that compares equal only while ``value`` is unchanged (tensors by identity and version)."""
    if isinstance(value, Tensor):
        return ("tensor", id(value), value._version)
    if isinstance(value, (list, tuple)):
        return (type(value), tuple(_frozen(v) for v in value))
    if isinstance(value, dict):
        return (dict, tuple((k, _frozen(v)) for k, v in value.items()))
    return value


def _plain_numbers(group: dict) -> dict:
    """The group with tensor hyperparameters (torch.optim allows ``lr=torch.tensor(1e-3)``) read as floats,
    so that the transforms see plain numbers; the group itself when it holds none (the usual case)."""
    def number(v):  # what the validators accept as a number; other tensors are not hyperparameters here
        return isinstance(v, Tensor) and v.numel() == 1 and not v.is_complex()

    def has_tensor(v):
        return number(v) or (isinstance(v, (tuple, list)) and any(number(x) for x in v))

    if not any(has_tensor(v) for k, v in group.items() if k not in _GROUP_ONLY):
        return group

    def plain(v):
        if number(v):
            return float(v)
        if isinstance(v, (tuple, list)) and has_tensor(v):
            return type(v)(plain(x) for x in v)
        return v

    return {k: v if k in _GROUP_ONLY else plain(v) for k, v in group.items()}


def _cloned(state: dict) -> dict:
    return {k: v.clone() if isinstance(v, Tensor) else copy.deepcopy(v) for k, v in state.items()}


def grads_finite(grad_lists: list[list[Tensor]]) -> bool:
    """True when no gradient holds inf or nan: one read of the gradients, one host sync.

    Gradients on the meta device hold no values and are not checked (torch.optim steps meta params).
    Sharded gradients (``torch.distributed.tensor.DTensor``, e.g. FSDP2) are checked on each rank's
    shard and the verdict is agreed over each mesh (one all-reduce of a flag), so that every rank
    raises or skips together instead of one rank leaving the others waiting in a collective.
    """
    grads = [g for gs in grad_lists for g in gs]
    dtensor = dtensor_type()
    meshes = _meshes(grads, dtensor)
    if meshes:
        grads = [g.to_local() if isinstance(g, dtensor) else g for g in grads]
    local = [g.coalesce().values() if g.is_sparse else g for g in grads if not g.is_meta]
    finite = not local or _finite_reductions(local) or _finite_extremes(local)
    if not meshes:
        return finite
    import torch.distributed as dist

    for mesh in meshes:
        flag = torch.tensor([0.0 if finite else 1.0], device=mesh.device_type)
        for dim in range(mesh.ndim):
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=mesh.get_group(dim))
        finite = flag.item() == 0.0
    return finite


def _meshes(grads: list[Tensor], dtensor) -> list:
    """The distinct device meshes of the sharded gradients, in the order the gradients list them (the
    same on every rank, so the collectives match)."""
    if dtensor is None:
        return []
    meshes: dict[int, Any] = {}
    for g in grads:
        if isinstance(g, dtensor):
            meshes.setdefault(id(g.device_mesh), g.device_mesh)
    return list(meshes.values())


# CPU gradients of at least this many values are checked by their sums, one call each; the others by one
# multi-tensor 2-norm. On the CPU a sum reads a large tensor 1.7x (one thread) to 3x (two: the norm does
# not split over threads) faster than the norm (2^20 values: 54 / 30 us against 83 / 80 us), so the
# per-tensor call pays for itself; below this size the call's own cost would dominate. On accelerators the
# multi-tensor norm is one kernel launch for all gradients, where per-tensor sums would be one each.
_SUMMED = 1 << 16


def _finite_reductions(grads: list[Tensor]) -> bool:
    # A sum or a 2-norm is non-finite when any term is (inf, -inf and nan all propagate), so this one read
    # misses nothing; either can also overflow for huge finite values, so a non-finite result is confirmed
    # with each tensor's (overflow-free) extremes. Half-precision sums accumulate in float32.
    large, small = [], []
    for g in grads:
        (large if g.is_cpu and g.numel() >= _SUMMED else small).append(g)
    parts = [g.sum(dtype=torch.float32) if g.dtype in _LOW_PRECISION else g.sum() for g in large]
    if small:
        parts += torch._foreach_norm(small)
    if any(t.dtype != parts[0].dtype for t in parts):
        parts = [t.float() for t in parts]
    return math.isfinite(torch.stack(parts).sum().item())


def _finite_extremes(grads: list[Tensor]) -> bool:
    # each tensor's min and max (nan propagates): one pass each, 16x faster than the inf-norm on the CPU;
    # the loop over tensors runs only after a non-finite sum or norm, not in a normal step
    extremes = [torch.stack(torch.aminmax(g)).float() for g in grads if g.numel()]
    return not extremes or bool(torch.cat(extremes).isfinite().all())
