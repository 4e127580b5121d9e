"""The gradient-transformation protocol and ``chain``.

A transform maps the list of updates of one param group to a new list, multi-tensor::

    state = t.init(params, ctx)                  # {key: [tensor or None per param]}
    updates = t.update(updates, state, params, ctx)

State lives in ``optimizer.state[p]`` under ``"<namespace>.<key>"``; the chain gives each transform
only its own keys. ``init`` may return ``None`` for a parameter that needs no entry under a key.

What a transform declares (class attributes the core, accounting, wrappers and the fused step read):

- ``state_kinds``: the :class:`~gradkit.core.state.StateKind` of every state key it creates;
- ``kind``: how far its arithmetic reaches (elementwise, per-tensor reduction, whole-matrix);
- ``scale_aware``: it only acts on the pending affine form (:class:`~gradkit.core.context.StepContext`);
- ``fusable``: its ``update`` is written entirely in ``ctx.ops`` and ``ctx.scalars(self)``, so the fused
  step can trace it (:mod:`gradkit.core.fused`). The math is written once: the unfused step runs the
  same ``update`` with multi-tensor ops and Python-float scalars;
- ``applies_lr``: it scales the update by the group's learning rate;
- ``must_follow``: transform classes that must come earlier in a chain (checked when it is built);
- ``group_state_keys``: the keys its group-level state holds once it has stepped (a loaded state_dict
  whose started group state lacks one is refused).

Step-dependent numbers (bias corrections, warm-ups, the learning rate) come from ``scalars(group,
step) -> {name: float}``, read in ``update`` through ``ctx.scalars(self)``.

>>> import torch, gradkit
>>> t = gradkit.chain(gradkit.scale_by_adam(), gradkit.scale_by_learning_rate())
>>> t.signature()
['adam:ScaleByAdam', 'lr:ScaleByLearningRate']
>>> str(t.kind_of("adam.exp_avg_sq"))
'second_moment'
"""
from __future__ import annotations

import warnings
from typing import Iterable

from torch import Tensor

from gradkit.core.context import StepContext
from gradkit.core.state import ELEMENTWISE, StateKind, as_kind, nest, split_key, unnest

__all__ = ["GradientTransform", "Chain", "chain", "as_inner", "init_inner", "update_inner"]

StateLists = dict[str, list]


class GradientTransform:
    """Base class. Subclasses set ``name`` and override ``update`` (and ``init`` if stateful)."""

    name = "transform"
    #: True when ``update`` understands the pending ``ctx.scale`` / ``ctx.decay``; otherwise the chain
    #: materializes them first.
    scale_aware = False
    #: True when ``update`` accepts sparse gradients.
    supports_sparse = False
    #: True when ``update`` is written in ``ctx.ops`` and ``ctx.scalars(self)`` only (the fused step traces it).
    fusable = False
    #: The kind of every state key (a :class:`~gradkit.core.state.StateKind` or its name).
    state_kinds: dict = {}
    #: ``"elementwise"``, ``"per_tensor_reduction"`` or ``"whole_matrix"`` (see :mod:`gradkit.core.state`).
    kind = ELEMENTWISE
    #: True when the transform multiplies the update by the group's learning rate.
    applies_lr = False
    #: Transform classes of which one must come earlier in any chain holding this transform.
    must_follow: tuple = ()
    #: The keys of its group-level state (``ctx.group_state``) once it has stepped; checked on load.
    group_state_keys: tuple = ()

    def spans_params(self, group: dict) -> bool:
        """True when, with ``group``'s hyperparameters, its statistics span every param of the group (a global
        norm, a group-wide sum or maximum): it is then exact only where one process steps the whole group."""
        return False

    def init(self, params: list[Tensor], ctx: StepContext) -> StateLists:
        return {}

    def update(self, updates: list[Tensor], state: StateLists, params: list[Tensor], ctx: StepContext) -> list[Tensor]:
        raise NotImplementedError

    def scalars(self, group: dict, step: int) -> dict[str, float]:
        """The numbers ``update`` needs at ``step``, computed in Python from the group.

        ``update`` reads them with ``ctx.scalars(self)``: floats on the unfused step, 0-dim tensors on the
        fused one, so a new learning rate or step count never recompiles the program. Everything else
        ``update`` reads from the group (flags such as ``amsgrad``) is compiled in as a constant. A wrapper
        nests its inner transform's scalars under the label it nests the inner state under.
        """
        return {}

    def validate(self, group: dict) -> None:
        """Raise ``ValueError`` naming the argument if the group's hyperparameters are out of range."""

    def children(self) -> dict[str, "GradientTransform"]:
        """Nested transforms by the label their state is kept under (wrappers override this)."""
        return {}

    def kind_of(self, key: str) -> StateKind:
        """The declared kind of a state key (nested keys are resolved through :meth:`children`); a stored
        form of a state (``"adam.exp_avg#codes"``, :mod:`gradkit.core.storage`) has the state's kind."""
        key = key.split("#", 1)[0]
        if key in self.state_kinds:
            return as_kind(self.state_kinds[key])
        label, rest = split_key(key)
        child = self.children().get(label) if label else None
        if child is not None:
            return child.kind_of(rest)
        raise KeyError(f"{type(self).__name__} declares no kind for its state key {key!r} (state_kinds)")

    @property
    def lr_applied(self) -> bool:
        """True when this transform or a nested one applies the learning rate."""
        return self.applies_lr or any(c.lr_applied for c in self.children().values())

    def predict(self, state: StateLists, params: list[Tensor], ctx: StepContext) -> list[Tensor]:
        """The update the current state gives with no new gradient, without side effects (for weight
        prediction, :mod:`gradkit.core.prediction`); ``ctx`` holds the steps already taken. Transforms
        that cannot predict raise ``TypeError``."""
        raise TypeError(f"{type(self).__name__} cannot predict its next update (it has no predict method)")

    @property
    def predicts(self) -> bool:
        return type(self).predict is not GradientTransform.predict

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


def _check_order(transforms: tuple[GradientTransform, ...]) -> None:
    for i, t in enumerate(transforms):
        for required in t.must_follow:
            if not any(isinstance(u, required) for u in transforms[:i]):
                raise ValueError(f"{type(t).__name__} must come after {required.__name__} in a chain "
                                 f"(got {', '.join(type(u).__name__ for u in transforms)})")


class Chain(GradientTransform):
    """Applies transforms in order; state keys are namespaced ``"<namespace>.<key>"``."""

    name = "chain"
    scale_aware = True

    def __init__(self, *transforms: GradientTransform, nested: bool = False):
        flat: list[GradientTransform] = []
        for t in transforms:
            if not isinstance(t, GradientTransform):
                raise TypeError(f"chain takes GradientTransform objects, got {type(t).__name__}")
            flat.extend(t.transforms if isinstance(t, Chain) else [t])
        _check_order(tuple(flat))
        self.transforms = tuple(flat)
        self.namespaces = tuple(_namespaces(flat))
        self.supports_sparse = all(t.supports_sparse for t in flat)
        self.nested = nested
        self._warned_lr = False
        self._layouts: dict[tuple, list] = {}

    def signature(self) -> list[str]:
        """Identifies the state layout; a state_dict only loads into an optimizer with the same one."""
        return [f"{ns}:{type(t).__name__}" for ns, t in zip(self.namespaces, self.transforms)]

    def children(self) -> dict[str, GradientTransform]:
        return dict(zip(self.namespaces, self.transforms))

    @property
    def fusable(self) -> bool:  # type: ignore[override]
        return all(t.fusable for t in self.transforms)

    def validate(self, group: dict) -> None:
        for t in self.transforms:
            t.validate(group)
        if not self.nested and "lr" in group and not self.lr_applied and not self._warned_lr:
            self._warned_lr = True
            warnings.warn(f"the param group has lr={group['lr']!r} but no transform of {self!r} applies a learning "
                          "rate: the update is added to the params unscaled (add scale_by_learning_rate())",
                          UserWarning, stacklevel=3)

    def init(self, params: list[Tensor], ctx: StepContext) -> StateLists:
        state: StateLists = {}
        for ns, t in zip(self.namespaces, self.transforms):
            with ctx.enter(ns):
                for key, values in t.init(params, ctx).items():
                    state[f"{ns}.{key}"] = values
        return state

    def update(self, updates, state, params, ctx):
        owns = [unnest(ns, state) for ns in self.namespaces] if ctx.traced else self._unnested(state)
        for ns, t, own in zip(self.namespaces, self.transforms, owns):
            if not t.scale_aware:
                updates = ctx.materialize(updates, params)
            with ctx.enter(ns):
                updates = ctx.settle(updates, t.update(updates, own, params, ctx))
        return updates

    def _unnested(self, state: StateLists) -> list[StateLists]:
        """Each transform's own state (``unnest`` per namespace), with the split of the keys remembered
        per layout of the state, as the same layout comes back every step (the unfused step only: a
        traced step would guard on the cache and compile again once it changed)."""
        keys = tuple(state)
        layout = self._layouts.get(keys)
        if layout is None:
            own = [unnest(ns, dict.fromkeys(keys)) for ns in self.namespaces]
            layout = self._layouts[keys] = [[(short, f"{ns}.{short}") for short in o] for ns, o in zip(self.namespaces, own)]
        return [{short: state[full] for short, full in pairs} for pairs in layout]

    def scalars(self, group, step):
        return {ns: t.scalars(group, step) for ns, t in zip(self.namespaces, self.transforms)}

    def predict(self, state, params, ctx):
        """The transforms before the first that predicts must be stateless (they act on a gradient, which
        a prediction has none of) and are skipped; the ones after it must be scale-aware."""
        updates, predictor = None, None
        for ns, t in zip(self.namespaces, self.transforms):
            own = unnest(ns, state)
            with ctx.enter(ns):
                if updates is None:
                    if t.predicts:
                        updates, predictor = ctx.settle([], t.predict(own, params, ctx)), t
                    elif any(v is not None for values in own.values() for v in values):
                        raise TypeError(f"{type(t).__name__} cannot predict its next update (it has no predict method)")
                elif t.scale_aware:
                    updates = t.update(updates, own, params, ctx)
                else:
                    raise TypeError(f"weight prediction cannot run {type(t).__name__} after "
                                    f"{type(predictor).__name__}: only scale-aware transforms may follow")
        if updates is None:
            names = [type(t).__name__ for t in self.transforms if not t.scale_aware]
            raise TypeError(f"no transform of the chain can predict its next update ({', '.join(names) or 'none'})")
        return updates

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        return f"chain(\n  {inner},\n)"


def as_inner(transform: GradientTransform) -> Chain:
    """The chain a wrapper runs its inner transform as (a nested chain: its own namespaces, not checked
    for a learning rate, which the outer chain applies)."""
    if not isinstance(transform, GradientTransform):
        raise TypeError(f"inner must be a GradientTransform, got {type(transform).__name__}")
    return Chain(*(transform.transforms if isinstance(transform, Chain) else (transform,)), nested=True)


def init_inner(label: str, inner: GradientTransform, params: list[Tensor], ctx: StepContext) -> StateLists:
    """A wrapper's ``init`` of its inner transform: the inner state nested under ``label``."""
    with ctx.enter(label):
        return nest(label, inner.init(params, ctx))


def update_inner(label: str, inner: GradientTransform, updates: list[Tensor], state: StateLists, params: list[Tensor],
                 ctx: StepContext) -> list[Tensor]:
    """A wrapper's call of its inner transform: on the state nested under ``label``, with its scalars and
    group state looked up there, and the ownership of its output settled. Updates the inner chain left
    pending as matrix products are formed (wrappers read update values)."""
    with ctx.enter(label):
        return ctx.evaluate_products(ctx.settle(updates, inner.update(updates, unnest(label, state), params, ctx)))


def fused_kind_of(cls: type) -> str | None:
    """``"values"`` for a transform class with a fused form (its ``update`` can be traced), else ``None``."""
    fusable = getattr(cls, "fusable", False)
    return "values" if fusable is True or isinstance(fusable, property) else None


def chain(*transforms: GradientTransform) -> Chain:
    """Compose transforms left to right (nested chains are flattened, so chain is associative).

    >>> import gradkit
    >>> gradkit.chain(gradkit.chain(gradkit.scale_by_adam()), gradkit.scale_by_learning_rate()).namespaces
    ('adam', 'lr')
    """
    return Chain(*transforms)
