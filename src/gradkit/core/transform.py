"""The gradient-transformation protocol and ``chain``.

A transform maps the list of updates of one param group to a new list, multi-tensor::

    state = t.init(params, ctx)                  # {key: [tensor or None per param]}
    updates = t.update(updates, state, params, ctx)

State lives in ``optimizer.state[p]`` under ``"<namespace>.<key>"``; the chain gives each transform
only its own keys. ``init`` may return ``None`` for a parameter that needs no entry under a key.

A transform may also have a *fused form* (:meth:`GradientTransform.fused_scalars` and
:meth:`GradientTransform.fused_tensor` or :meth:`GradientTransform.fused_update`): the same update
written as plain tensor math whose step-dependent scalars arrive as tensors, so that
``gradkit.Optimizer(..., fused=True)`` can compile a whole chain into one program
(:mod:`gradkit.core.fused`).
"""
from __future__ import annotations

from typing import Iterable

from torch import Tensor

from gradkit.core.context import StepContext

__all__ = ["GradientTransform", "Chain", "chain"]

StateLists = dict[str, list]
_NO_SCALARS: dict = {}


class GradientTransform:
    """Base class. Subclasses set ``name`` and override ``update`` (and ``init`` if stateful)."""

    name = "transform"
    #: True when ``update`` understands the pending ``ctx.scale`` / ``ctx.decay``; otherwise the chain
    #: materializes them first.
    scale_aware = False
    #: True when ``update`` accepts sparse gradients.
    supports_sparse = False
    #: True when ``fused_update`` takes a last argument ``pending`` (``[scale, decay]`` per tensor, to
    #: leave a decay pending as the unfused ``ctx.add_decay`` does).
    fused_sets_pending = False
    #: Optional map from state key to its kind ("moment", "projection", "index", ...) for accounting.
    state_kinds: dict[str, str] = {}

    def init(self, params: list[Tensor], ctx: StepContext) -> StateLists:
        return {}

    def update(self, updates: list[Tensor], state: StateLists, params: list[Tensor], ctx: StepContext) -> list[Tensor]:
        raise NotImplementedError

    def validate(self, group: dict) -> None:
        """Raise ``ValueError`` naming the argument if the group's hyperparameters are out of range."""

    def kind_of(self, key: str) -> str:
        return self.state_kinds.get(key, "moment")

    # -- the fused form (gradkit.core.fused) -------------------------------------------------------
    def fused_scalars(self, group: dict, step: int) -> dict[str, float]:
        """The scalars the fused form needs at ``step``, computed in Python from the group.

        They reach :meth:`fused_tensor` as 0-dim tensors, so a new learning rate or step count never
        recompiles the program. Everything else the fused form reads from the group (flags such as
        ``amsgrad``) is compiled in as a constant. A transform that wraps another nests the inner
        transform's scalars under a key of their own.
        """
        return {}

    def fused_tensor(self, update: Tensor, state: dict[str, Tensor], param: Tensor, scalars: dict[str, Tensor],
                     group: dict) -> Tensor:
        """The update of one tensor as plain tensor math; returns the new update.

        Must not write into ``update`` (it may be the gradient); writes its own ``state`` in place.
        """
        raise NotImplementedError

    def fused_update(self, updates: list[Tensor], state: StateLists, params: list[Tensor],
                     scalars: list[dict[str, Tensor]], group: dict) -> list[Tensor]:
        """The fused form over a group's tensors; by default :meth:`fused_tensor` on each. Transforms
        that reduce across tensors (global-norm clipping) override this instead."""
        return [
            self.fused_tensor(u, {k: v[i] for k, v in state.items()}, p, scalars[i], group)
            for i, (u, p) in enumerate(zip(updates, params))
        ]

    def fused_affine(self, scale, decay, scalars: dict[str, Tensor], group: dict):
        """The fused form of a scale-aware transform: acts on the pending ``(scale, decay)`` of one
        tensor (true update = ``scale * update + decay * param``) instead of on values; returns the new
        pair. The program applies what is left pending at the end as the unfused step does
        (``p *= 1 + decay``, then ``p += scale * update``), so the two round alike."""
        raise NotImplementedError

    @property
    def fusable(self) -> bool:
        """True when the transform has a fused form."""
        return self.fused_kind is not None

    @property
    def fused_kind(self) -> str | None:
        """``"affine"``, ``"values"`` or ``None`` (no fused form)."""
        return fused_kind_of(type(self))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def _namespaces(transforms: Iterable[GradientTransform]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for t in transforms:
        n = seen.get(t.name, 0)
        seen[t.name] = n + 1
        out.append(t.name if n == 0 else f"{t.name}_{n}")
    return out


class Chain(GradientTransform):
    """Applies transforms in order; state keys are namespaced ``"<namespace>.<key>"``."""

    name = "chain"
    scale_aware = True

    def __init__(self, *transforms: GradientTransform):
        flat: list[GradientTransform] = []
        for t in transforms:
            if not isinstance(t, GradientTransform):
                raise TypeError(f"chain takes GradientTransform objects, got {type(t).__name__}")
            flat.extend(t.transforms if isinstance(t, Chain) else [t])
        self.transforms = tuple(flat)
        self.namespaces = tuple(_namespaces(flat))
        self.supports_sparse = all(t.supports_sparse for t in flat)

    def signature(self) -> list[str]:
        """Identifies the state layout; a state_dict only loads into an optimizer with the same one."""
        return [f"{ns}:{type(t).__name__}" for ns, t in zip(self.namespaces, self.transforms)]

    def validate(self, group: dict) -> None:
        for t in self.transforms:
            t.validate(group)

    def init(self, params: list[Tensor], ctx: StepContext) -> StateLists:
        state: StateLists = {}
        for ns, t in zip(self.namespaces, self.transforms):
            ctx.namespace = ns
            for key, values in t.init(params, ctx).items():
                state[f"{ns}.{key}"] = values
        return state

    def update(self, updates, state, params, ctx):
        for ns, t in zip(self.namespaces, self.transforms):
            if not t.scale_aware:
                updates = ctx.materialize(updates, params)
            prefix = ns + "."
            own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            ctx.namespace = ns
            ctx._claimed = False
            out = t.update(updates, own, params, ctx)
            if out is not updates and not ctx._claimed:
                ctx.owned = False  # new tensors that the transform did not declare fresh are borrowed
            updates = out
        return updates

    @property
    def fusable(self) -> bool:
        return all(t.fusable for t in self.transforms)

    def fused_scalars(self, group, step):
        return {ns: t.fused_scalars(group, step) for ns, t in zip(self.namespaces, self.transforms)}

    @property
    def fused_kind(self) -> str | None:
        return "values" if self.fusable else None

    def fused_update(self, updates, state, params, scalars, group, pending=None):
        """Runs the fused forms in order. With ``pending`` (a list of ``[scale, decay]`` per tensor) the
        scale-aware tail is left in it, unevaluated; without, the result is the true update."""
        own_pending = [[1.0, 0.0] for _ in updates]
        for ns, t in zip(self.namespaces, self.transforms):
            prefix = ns + "."
            own_scalars = [row.get(ns, _NO_SCALARS) for row in scalars]
            if t.fused_kind == "affine":
                own_pending = [list(t.fused_affine(*pair, row, group)) for pair, row in zip(own_pending, own_scalars)]
                continue
            updates = [_apply_pending(u, p, *pair) for u, p, pair in zip(updates, params, own_pending)]
            own_pending = [[1.0, 0.0] for _ in updates]
            own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if t.fused_sets_pending:
                updates = t.fused_update(updates, own, params, own_scalars, group, own_pending)
            else:
                updates = t.fused_update(updates, own, params, own_scalars, group)
        if pending is None:
            return [_apply_pending(u, p, *pair) for u, p, pair in zip(updates, params, own_pending)]
        pending[:] = own_pending
        return updates

    def kind_of(self, key: str) -> str:
        ns, _, short = key.partition(".")
        for name, t in zip(self.namespaces, self.transforms):
            if name == ns:
                return t.kind_of(short)
        return "moment"

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        return f"chain(\n  {inner},\n)"


def fused_kind_of(cls: type) -> str | None:
    """The kind of fused form a transform class defines: ``"affine"``, ``"values"`` or ``None``."""
    if cls.fused_affine is not GradientTransform.fused_affine:
        return "affine"
    if cls.fused_tensor is not GradientTransform.fused_tensor or cls.fused_update is not GradientTransform.fused_update:
        return "values"
    return None


def _apply_pending(update: Tensor, param: Tensor, scale, decay) -> Tensor:
    """``scale * update + decay * param`` for the fused forms (constant 1 and 0 cost nothing)."""
    if not (isinstance(scale, float) and scale == 1.0):
        update = update * scale
    if not (isinstance(decay, float) and decay == 0.0):
        update = update + decay * param
    return update


def chain(*transforms: GradientTransform) -> Chain:
    """Compose transforms left to right (nested chains are flattened, so chain is associative)."""
    return Chain(*transforms)
