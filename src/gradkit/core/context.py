"""What a transform sees besides updates, state and params during one step of one param group.

The context carries a *pending affine form* so that scalar work costs no pass over memory. The true
update is

    scale * (updates / denominator) + decay * params        (denominator absent: just updates)

with ``scale = scale_num / scale_div``. Transforms that declare ``scale_aware = True`` only touch
this form (:meth:`multiply`, :meth:`divide`, :meth:`add_decay`) and never read the update values;
for every other transform the chain first calls :meth:`materialize`, so they see plain updates.
At the end, :meth:`apply` adds the form to the params with torch.optim's own ops
(``params *= 1 + decay``; ``params.addcdiv_(updates, denominator, value=scale)``), which is what
makes gradkit's Adam/AdamW/SGD bitwise equal to torch.optim's multi-tensor path.

An update may also be left pending as a matrix product ``left @ right`` (:meth:`defer_products`: a
low-rank method's back-projection). :meth:`apply` then accumulates it into the param inside the matrix
multiply (``addmm_``), so no param-sized update is ever made; :meth:`materialize` and
:meth:`evaluate_products` form it for transforms that read the values.

The same context, and so the same pending form, serves both steps: the unfused one (``ops`` is
:data:`~gradkit.core.ops.FOREACH`, scalars are Python floats) and the fused one (``ops`` is
:data:`~gradkit.core.ops.TRACED`, scalars are 0-dim tensors traced into one compiled program).

Step-dependent scalars come from each transform's ``scalars(group, step)`` through
:meth:`scalars`: computed in Python per distinct step on the unfused step (one float, or one per
tensor when tensors are at different steps), read from the compiled program's table on the fused
one. The step counts themselves are not available on the fused step (they would be compiled in).

Ownership: ``updates`` may alias ``p.grad`` or an optimizer state buffer. A transform that wants to
write into its input calls :meth:`writable` (which copies only when the input is not owned); one
that returns fresh tensors passes them through :meth:`fresh`, one that returns tensors it does not own
(its state buffers) through :meth:`borrowed`. Anything returned without a declaration is treated as
borrowed (:meth:`settle`).
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor

from gradkit.core.hyper import resolve
from gradkit.core.ops import FOREACH, Ops, ScalarList, is_number

Scalars = Any  # float | Tensor | list of those, one per tensor


class StepContext:
    """The step of one param group, as the transforms see it.

    Args:
        group: the param group (hyperparameters).
        steps: the step count each tensor is about to take (its number of updates so far, plus one).
        group_state: persistent group-level state, by namespace.
        ops: :data:`~gradkit.core.ops.FOREACH` (unfused step) or :data:`~gradkit.core.ops.TRACED`.
        scalar_trees: on the traced step, each tensor's tree of scalars (as ``Chain.scalars`` nests them).
    """

    def __init__(self, group: dict, steps: Sequence[int], group_state: dict | None = None, *, ops: Ops = FOREACH,
                 scalar_trees: Sequence[dict] | None = None):
        self.group = group
        self.ops = ops
        self._steps = list(steps)
        self._distinct_steps = list(dict.fromkeys(self._steps))
        self.scale_num: Scalars = 1.0
        self.scale_div: Scalars = 1.0
        self.decay: Scalars = 0.0
        self.denominator: list[Tensor] | None = None
        #: updates left pending as matrix products: tensor index -> (left, right, shape), see :meth:`defer_products`
        self.products: dict[int, tuple[Tensor, Tensor, Any]] = {}
        self.owned = False
        self.path: tuple[str, ...] = ()
        self._namespace = ""
        self._group_state = {} if group_state is None else group_state
        self._trees = scalar_trees
        #: On a step over the local shards of sharded params, their :class:`~gradkit.core.sharding.Shards`
        #: (per-tensor reductions complete their partial sums with ``ctx.shards.sum``); ``None`` otherwise.
        self.shards = None
        self._declared = False

    # -- steps and hyperparameters ------------------------------------------------------------
    @property
    def traced(self) -> bool:
        """True on the fused step, whose code is traced once and compiled."""
        return self.ops.traced

    @property
    def steps(self) -> list[int]:
        """The step each tensor is about to take (unfused step only: use :meth:`scalars` for math)."""
        if self.traced:
            raise RuntimeError("step counts are not available on the fused step: put what depends on them in the "
                               "transform's scalars(group, step)")
        return self._steps

    @property
    def step(self) -> int | None:
        """The common step count when every tensor has taken the same number of steps, else ``None``."""
        distinct = self._distinct_steps if not self.traced else self.steps
        return distinct[0] if len(distinct) == 1 else None

    def value(self, x: Any) -> Any:
        """A hyperparameter's value in this group (``hp`` references are read from the group).

        On the fused step a value read this way is compiled in: read only flags and structure here, and
        numbers through :meth:`scalars`."""
        return resolve(x, self.group)

    def scalars(self, transform) -> dict[str, Scalars]:
        """``transform.scalars(group, step)`` for this step: floats (one per tensor where tensors are at
        different steps) on the unfused step, 0-dim tensors from the program's table on the fused one."""
        if self._trees is not None:
            nodes = []
            for tree in self._trees:
                for key in self.path:
                    tree = tree[key]
                nodes.append(tree)
            first = nodes[0] if nodes else {}
            if all(node is first for node in nodes):
                return first
            return {key: ScalarList(node[key] for node in nodes) for key in first}
        steps = self._distinct_steps
        if len(steps) <= 1:
            return transform.scalars(self.group, steps[0] if steps else 1)
        by_step = {s: transform.scalars(self.group, s) for s in steps}
        out = {}
        for key in by_step[steps[0]]:
            values = [by_step[s][key] for s in self._steps]
            out[key] = values[0] if all(v == values[0] for v in values) else values
        return out

    # -- nesting -------------------------------------------------------------------------------
    def enter(self, label: str) -> "_Scope":
        """Run a nested transform under ``label``: its scalars and group state are looked up there."""
        return _Scope(self, label)

    @property
    def namespace(self) -> str:
        return self._namespace

    @namespace.setter
    def namespace(self, value: str) -> None:
        self._namespace = value

    @property
    def group_state(self) -> dict:
        """Persistent, group-level state of the running transform (saved in the state_dict)."""
        return self._group_state.setdefault(self._namespace, {})

    # -- ownership ---------------------------------------------------------------------------
    def writable(self, updates: list[Tensor]) -> list[Tensor]:
        """``updates``, copied unless they are already owned: safe to write into."""
        self._declared = True
        if not self.owned:
            updates = self.ops.clone(updates)
            self.owned = True
        return updates

    def fresh(self, updates: list[Tensor]) -> list[Tensor]:
        """Declare ``updates`` new tensors owned by the chain (a later transform may write into them)."""
        self._declared = True
        self.owned = True
        return updates

    def borrowed(self, updates: list[Tensor]) -> list[Tensor]:
        """Declare ``updates`` tensors the chain does not own (state buffers, gradients)."""
        self._declared = True
        self.owned = False
        return updates

    def settle(self, inputs: list[Tensor], outputs: list[Tensor]) -> list[Tensor]:
        """Called after a transform: new tensors it returned without declaring them are borrowed."""
        if outputs is not inputs and not self._declared:
            self.owned = False
        self._declared = False
        return outputs

    # -- the pending affine form -------------------------------------------------------------
    @property
    def scale(self) -> Scalars:
        return _zip(self.scale_num, self.scale_div, lambda n, d: n / d)

    @property
    def is_plain(self) -> bool:
        return self.denominator is None and not self.products and _all(self.scale, 1.0) and _all(self.decay, 0.0)

    def multiply(self, factor: Scalars) -> None:
        """Multiply the true update by ``factor`` (a scalar, or one per tensor)."""
        self.scale_num = _zip(self.scale_num, factor, lambda a, b: a * b)
        self.decay = _zip(self.decay, factor, lambda a, b: a * b)

    def divide(self, divisor: Scalars) -> None:
        """Divide the true update by ``divisor`` (a scalar, or one per tensor)."""
        self.scale_div = _zip(self.scale_div, divisor, lambda a, b: a * b)
        self.decay = _zip(self.decay, divisor, lambda a, b: a / b)

    def add_decay(self, weight_decay: Scalars) -> None:
        """Add ``weight_decay * params`` to the true update."""
        self.decay = _zip(self.decay, weight_decay, lambda a, b: a + b)

    def quotient(self, numerator: list[Tensor], denominator: list[Tensor], owned: bool = False) -> list[Tensor]:
        """Return ``numerator`` with the update left pending as ``numerator / denominator``.

        ``numerator`` is borrowed (usually a state buffer) unless ``owned``; ``denominator`` must be
        fresh tensors owned by the caller.
        """
        if self.denominator is not None or not (_all(self.scale, 1.0) and _all(self.decay, 0.0)):
            raise RuntimeError("quotient() needs a plain context: the chain materializes before non-scale-aware transforms")
        self.denominator = denominator
        self._declared = True
        self.owned = owned
        return numerator

    def evaluate_quotient(self, updates: list[Tensor]) -> list[Tensor]:
        """Divide a pending denominator out (the scale and decay stay pending)."""
        if self.denominator is None:
            return updates
        if self.owned:
            self.ops.div_(updates, self.denominator)
        else:
            updates = self.ops.div(updates, self.denominator)
            self.owned = True
        self.denominator = None
        self._declared = True
        return updates

    def defer_products(self, updates: list[Tensor], products: dict[int, tuple[Tensor, Tensor, Any]]) -> list[Tensor]:
        """Leave ``updates[j]`` pending as ``(left @ right).reshape(shape)`` for each ``j: (left, right, shape)``
        of ``products`` (matrices the caller no longer writes into; ``shape`` is the param's); ``updates[j]`` is
        then only a placeholder. Needs a plain context (the chain materializes before non-scale-aware
        transforms)."""
        if self.traced:
            raise RuntimeError("defer_products() is for the unfused step: the fused step materializes its updates")
        if not self.is_plain:
            raise RuntimeError("defer_products() needs a plain context: the chain materializes before "
                               "non-scale-aware transforms")
        self.products = dict(products)
        return updates

    def evaluate_products(self, updates: list[Tensor]) -> list[Tensor]:
        """``updates`` with the pending products formed (new tensors in their places); the scale and decay
        stay pending. For wrappers that read an inner chain's update values."""
        if not self.products:
            return updates
        updates = list(updates)
        for j, (left, right, shape) in self.products.items():
            updates[j] = (left @ right).reshape(shape)
        self.products = {}
        return updates

    def absorb(self, inner: "StepContext", updates: list[Tensor], order: list[int] | None = None) -> list[Tensor]:
        """Take over the pending form of a nested chain's context, unevaluated.

        For transforms that run an inner chain (on the same tensors, possibly listed in another order:
        ``order[j]`` is the inner index of outer tensor ``j``). Keeps an inner Adam's final addcdiv.
        """

        def reorder(x):
            return type(x)(x[j] for j in order) if order is not None and isinstance(x, list) else x

        if order is not None:
            updates = [updates[j] for j in order]
        if inner.products:
            outer = {inner_index: j for j, inner_index in enumerate(order)} if order is not None else None
            self.products = {j if outer is None else outer[j]: product for j, product in inner.products.items()}
        if inner.denominator is not None:
            updates = self.quotient(updates, reorder(inner.denominator), owned=inner.owned)
        else:
            self.owned = inner.owned
            self._declared = True
        self.multiply(reorder(inner.scale_num))
        self.divide(reorder(inner.scale_div))
        self.add_decay(reorder(inner.decay))
        return updates

    def materialize(self, updates: list[Tensor], params: list[Tensor]) -> list[Tensor]:
        """Evaluate the pending form so that ``updates`` is the true update."""
        if self.is_plain:
            return updates
        ops = self.ops
        updates = self.evaluate_products(updates)
        updates = self.evaluate_quotient(updates)
        scale = self.scale
        if not _all(scale, 1.0):
            if self.owned:
                ops.mul_(updates, scale)
            else:
                updates = ops.mul(updates, scale)
                self.owned = True
        if not _all(self.decay, 0.0):
            decay = self.decay
            other, alpha = (params, decay) if is_number(decay) or ops.traced else (ops.mul(params, decay), 1.0)
            if self.owned:
                ops.add_(updates, other, alpha=alpha)
            else:
                updates = ops.add(updates, other, alpha=alpha)
                self.owned = True
        self.scale_num, self.scale_div, self.decay = 1.0, 1.0, 0.0
        self._declared = True
        return updates

    def apply(self, params: list[Tensor], updates: list[Tensor]) -> None:
        """``params += scale * updates / denominator + decay * params`` in the fewest passes."""
        if not params:
            return
        ops = self.ops
        decay, scale = self.decay, self.scale
        if not _all(decay, 0.0):
            ops.mul_(params, _map(decay, lambda d: 1.0 + d))
        if self.products:
            params, updates, scale = self._apply_products(params, updates, scale)
            if not params:
                return
        if self.denominator is not None:
            ops.addcdiv_(params, updates, self.denominator, scale)
        elif isinstance(scale, list):
            ops.add_(params, ops.mul(updates, scale))
        elif not is_number(scale, 0.0):
            ops.add_(params, updates, alpha=scale)

    def _apply_products(self, params: list[Tensor], updates: list[Tensor], scale: Scalars):
        """Accumulate the pending products into their params (one ``addmm_`` each, no update tensor); return
        the other params, updates and scales for the rest of :meth:`apply`."""
        if self.denominator is not None:
            raise RuntimeError("a pending denominator over pending products cannot be applied")
        for j, (left, right, shape) in self.products.items():
            factor = scale[j] if isinstance(scale, list) else scale
            if is_number(factor, 0.0):
                continue
            target = params[j]
            if target.is_contiguous():  # a view: the product is added inside the GEMM (beta = 1)
                target.view(left.shape[0], right.shape[1]).addmm_(left, right, alpha=factor)
            else:
                target.add_((left @ right).reshape(shape), alpha=factor)
        rest = [j for j in range(len(params)) if j not in self.products]
        if isinstance(scale, list):
            scale = type(scale)(scale[j] for j in rest)
            if scale and all(s is scale[0] or (is_number(s) and s == scale[0]) for s in scale):
                scale = scale[0]  # one number: the plain add_ with alpha, no multiply
        return [params[j] for j in rest], [updates[j] for j in rest], scale


class _Scope:
    """``with ctx.enter(label):`` (a class rather than a generator: it runs several times per step)."""

    __slots__ = ("ctx", "label", "saved")

    def __init__(self, ctx: StepContext, label: str):
        self.ctx, self.label = ctx, label

    def __enter__(self) -> StepContext:
        ctx = self.ctx
        self.saved = ctx.path, ctx._namespace
        ctx.path, ctx._namespace = ctx.path + (self.label,), self.label
        return ctx

    def __exit__(self, *exc) -> None:
        self.ctx.path, self.ctx._namespace = self.saved


def _all(x: Scalars, value: float) -> bool:
    if isinstance(x, list):
        return all(is_number(v, value) for v in x)
    return is_number(x, value)


def _map(x: Scalars, fn) -> Scalars:
    return type(x)(fn(v) for v in x) if isinstance(x, list) else fn(x)


def _zip(a: Scalars, b: Scalars, op) -> Scalars:
    if not isinstance(a, list) and not isinstance(b, list):
        return op(a, b)
    n = len(a) if isinstance(a, list) else len(b)
    kind = ScalarList if isinstance(a, ScalarList) or isinstance(b, ScalarList) else list
    a_list = a if isinstance(a, list) else [a] * n
    b_list = b if isinstance(b, list) else [b] * n
    return kind(op(x, y) for x, y in zip(a_list, b_list))
