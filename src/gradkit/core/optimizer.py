"""``gradkit.Optimizer``: a ``torch.optim.Optimizer`` whose step is a chain of gradient transforms.

One step, per param group: gather the params that have a gradient, check the gradients (the
``nonfinite`` policy), run the chain once over the whole list (multi-tensor), and add the result to
the params with one foreach op. Params without a gradient are skipped and their state is untouched.
"""
from __future__ import annotations

import copy
import math
from collections import defaultdict
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from gradkit.core.accounting import state_bytes
from gradkit.core.context import StepContext
from gradkit.core.fused import FusedGroup, FusedStep
from gradkit.core.prediction import predicted_weights
from gradkit.core.transform import Chain, GradientTransform

__all__ = ["Optimizer", "NONFINITE_POLICIES"]

NONFINITE_POLICIES = ("raise", "skip", "ignore")
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_META_KEY = "gradkit"
_FORMAT = 1


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
            arithmetic in float32) for float16/bfloat16 params and the param's dtype otherwise.
        fused: ``True`` compiles the whole step (every param group) into one program with
            ``torch.compile`` (:mod:`gradkit.core.fused`): each tensor's update is one loop over memory
            instead of one pass per op. Needs a fused form in every transform of the chain
            (``ValueError`` naming those without one) and every param on one device. The first step
            compiles (seconds); the results agree with the unfused step to float rounding and the
            state_dict is the same.

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
    ):
        if not isinstance(transform, GradientTransform):
            raise TypeError(f"transform must be a GradientTransform (e.g. gradkit.chain(...)), got {type(transform).__name__}")
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
        if state_dtype is not None and not (isinstance(state_dtype, torch.dtype) and state_dtype.is_floating_point):
            raise ValueError(f"state_dtype must be None or a floating-point torch.dtype, got {state_dtype!r}")
        if not isinstance(fused, bool):
            raise ValueError(f"fused must be True or False, got {fused!r}")
        self.transform = transform if isinstance(transform, Chain) else Chain(transform)
        self._fused_step: FusedStep | None = FusedStep(self.transform) if fused else None
        self.nonfinite = nonfinite
        self.state_dtype = state_dtype
        self.skipped_steps = 0
        self.group_states: list[dict] = []
        super().__init__(params, dict(defaults or {}))

    # -- groups ------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        candidate = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        self.transform.validate(candidate)  # before the group is added: a bad group leaves nothing behind
        super().add_param_group(param_group)
        self.group_states.append({})

    @property
    def fused(self) -> bool:
        return self._fused_step is not None

    # -- the step -----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = []
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                grads = [p.grad for p in params]
                self._check_sparse(grads)
                work.append((index, group, params, grads))
        if not work:
            return loss
        if self.nonfinite != "ignore" and not _all_finite([w[3] for w in work]):
            if self.nonfinite == "raise":
                raise FloatingPointError(
                    "a gradient holds inf or nan; params and state are unchanged "
                    "(pass nonfinite='skip' to skip such steps, or 'ignore' to not check)"
                )
            self.skipped_steps += 1
            return loss
        if self._fused_step is not None:
            self._step_fused(work)
        else:
            for index, group, params, grads in work:
                self._step_group(group, self.group_states[index], params, grads)
        return loss

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

    def _step_group(self, group: dict, group_state: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        upcast = [i for i, p in enumerate(params) if self.compute_dtype(p) != p.dtype]
        params_c, grads_c = params, grads
        if upcast:  # mixed precision: the chain works on copies in the state dtype
            params_c, grads_c = list(params), list(grads)
            for i in upcast:
                dtype = self.compute_dtype(params[i])
                params_c[i] = params[i].to(dtype)
                grads_c[i] = grads[i].to(dtype)

        states, lists = self._state_lists(group, group_state, params, params_c)
        for s in states:  # plain ints: a foreach op over 0-dim tensors costs more than the loop
            s["step"] += 1
        ctx = StepContext(group, [s["step"] for s in states], group_state)
        updates = self.transform.update(grads_c, lists, params_c, ctx)
        for k, values in lists.items():  # transforms may replace state tensors in their lists
            for s, v in zip(states, values):
                if v is not None:
                    s[k] = v

        ctx.apply(params_c, updates)
        if upcast:
            torch._foreach_copy_([params[i] for i in upcast], [params_c[i] for i in upcast])

    def _step_fused(self, work: list) -> None:
        """Every group's step in one compiled program (:mod:`gradkit.core.fused`)."""
        groups = []
        for index, group, params, grads in work:
            dtypes = [self.compute_dtype(p) for p in params]
            states, lists = self._state_lists(group, self.group_states[index], params)
            groups.append(FusedGroup(group, params, grads, lists, [s["step"] + 1 for s in states], dtypes))
        self._fused_step(groups)
        for _, _, params, _ in work:
            for p in params:
                self.state[p]["step"] += 1

    def _state_lists(self, group: dict, group_state: dict, params: list[Tensor], params_c: list[Tensor] | None = None):
        """Each param's state dict (initialised on the first step from the param in its compute dtype:
        ``params_c`` when the caller has it) and the state as ``{key: [tensor or None per param]}``."""
        states = [self.state[p] for p in params]
        new = [i for i, s in enumerate(states) if "step" not in s]
        if new:
            init = [params_c[i] if params_c is not None else params[i].to(self.compute_dtype(params[i])) for i in new]
            self._init_state(group, group_state, init, [states[i] for i in new])
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
                "group_states": self.group_states, "fused": self.fused}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        fused = state.pop("fused", False)
        super().__setstate__(state)
        self._fused_step = FusedStep(self.transform) if fused else None

    # -- weight prediction ----------------------------------------------------------------------
    def predicted_weights(self, steps: float = 1):
        """Context manager: inside it the params hold the weights ``steps`` updates ahead, as the chain's
        current state predicts them (:mod:`gradkit.core.prediction`; XGrad); the real weights are
        restored exactly on exit. Raises ``TypeError`` for a chain that cannot predict its update."""
        return predicted_weights(self.transform, self.param_groups, self.state, steps, self.compute_dtype)

    # -- accounting ---------------------------------------------------------------------------
    def state_bytes(self, by: str | None = None):
        """Bytes of optimizer state; ``by="param" | "key" | "kind"`` breaks the total down."""
        return state_bytes(self, by=by)

    # -- state_dict -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd[_META_KEY] = {
            "format": _FORMAT,
            "recipe": type(self).__qualname__,
            "transform": self.transform.signature(),
            "group_states": self.group_states,
            "skipped_steps": self.skipped_steps,
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        meta = state_dict.get(_META_KEY)
        if meta is None:
            raise ValueError("state_dict has no 'gradkit' entry: it was not saved by a gradkit optimizer")
        if meta.get("format") != _FORMAT:
            raise ValueError(f"state_dict format {meta.get('format')!r} is not supported (expected {_FORMAT})")
        if meta["recipe"] != type(self).__qualname__ or list(meta["transform"]) != self.transform.signature():
            raise ValueError(
                f"state_dict was saved by {meta['recipe']} with transforms {meta['transform']}, "
                f"but this optimizer is {type(self).__qualname__} with {self.transform.signature()}"
            )
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} param groups, this optimizer has {len(self.param_groups)}")
        id_map: dict[int, Tensor] = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(f"param group {i} has {len(group['params'])} params, the state_dict's has {len(saved['params'])}")
            id_map.update(zip(saved["params"], group["params"]))

        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            new = {**saved, "params": group["params"]}
            if "param_names" in group:
                new["param_names"] = group["param_names"]
            self.transform.validate(new)
            new_groups.append(new)
        expected = self._expected_state(new_groups)

        new_state: dict[Tensor, dict] = {}
        for pid, saved_state in state_dict["state"].items():
            if pid not in id_map:
                raise ValueError(f"state_dict has state for param id {pid!r}, which no param group holds")
            p = id_map[pid]
            layout = expected[p]
            entry = {}
            for key, value in saved_state.items():
                if key != "step" and key not in layout:
                    raise ValueError(f"state key {key!r} of param {pid} is not produced by this optimizer's transforms")
                want = layout.get(key)
                if isinstance(value, Tensor) and isinstance(want, Tensor) and value.shape != want.shape:
                    raise ValueError(f"state {key!r} of param {pid} has shape {tuple(value.shape)}, "
                                     f"expected {tuple(want.shape)}: the parameter layout differs")
                if key == "step" and not isinstance(value, int):
                    raise ValueError(f"state 'step' of param {pid} must be an int, got {type(value).__name__}")
                entry[key] = _copied(value, p.device)
            new_state[p] = entry

        self.param_groups = new_groups
        self.state = defaultdict(dict, new_state)
        self.group_states = copy.deepcopy(list(meta["group_states"]))
        self.skipped_steps = int(meta["skipped_steps"])

    def _expected_state(self, groups: list[dict]) -> dict[Tensor, dict[str, Any]]:
        """What ``init`` would create for each param, computed on the meta device (no memory)."""
        out: dict[Tensor, dict[str, Any]] = {}
        for group in groups:
            metas = [torch.empty_like(p, device="meta", dtype=self.compute_dtype(p)) for p in group["params"]]
            state = self.transform.init(metas, StepContext(group, [0] * len(metas)))
            for j, p in enumerate(group["params"]):
                out[p] = {k: v[j] for k, v in state.items() if v[j] is not None}
        return out


def _copied(value: Any, device: torch.device) -> Any:
    """A loaded state value that shares nothing with the state_dict: tensors (also inside containers)
    are copied onto the param's device, keeping their dtype."""
    if isinstance(value, Tensor):
        return value.detach().to(device, copy=True)
    if isinstance(value, (list, tuple)):
        return type(value)(_copied(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _copied(v, device) for k, v in value.items()}
    return copy.deepcopy(value)


def _all_finite(grad_lists: list[list[Tensor]]) -> bool:
    """True when no gradient holds inf or nan: one read of the gradients, one host sync."""
    if any(g.is_sparse for grads in grad_lists for g in grads):
        grad_lists = [[g.coalesce().values() if g.is_sparse else g for g in grads] for grads in grad_lists]
    # The 2-norm is a single fast pass; it propagates inf/nan but can also overflow for huge finite
    # values, so a non-finite 2-norm is confirmed with the (slower, overflow-free) max-norm.
    return _finite_norms(grad_lists, 2.0) or _finite_norms(grad_lists, math.inf)


def _finite_norms(grad_lists: list[list[Tensor]], order: float) -> bool:
    norms = [n for grads in grad_lists for n in torch._foreach_norm(grads, ord=order)]
    if any(n.dtype != norms[0].dtype for n in norms):
        norms = [n.float() for n in norms]
    stacked = torch.stack(norms)
    # fast path: one reduction and one sync; the confirmation must not overflow, so it checks each norm
    return math.isfinite(stacked.sum().item()) if order == 2.0 else bool(stacked.isfinite().all())
