"""What each state tensor is (its declared kind), and how wrappers nest an inner transform's state.

Kinds. Every state key a transform creates has a declared :class:`StateKind` in its ``state_kinds``.
Accounting groups bytes by the kind's ``category``; wrappers and future quantization or sharding read
its properties (``non_negative`` for second moments, ...) instead of guessing from the key's name.

Nesting. A wrapper that runs an inner transform keeps the inner state under ``"<label>.<inner key>"``
(``on.`` / ``off.`` for :func:`~gradkit.transforms.select_by_group`, ``inner.`` for a projection
wrapper, ...), with :func:`nest` and :func:`unnest`; the chain does the same with each transform's
namespace. One scheme everywhere, so ``kind_of`` of a nested key walks down the same labels
(:meth:`~gradkit.core.transform.GradientTransform.kind_of`).

>>> nest("inner", {"adam.exp_avg": [1]})
{'inner.adam.exp_avg': [1]}
>>> unnest("inner", {"inner.adam.exp_avg": [1], "seed": [2]})
{'adam.exp_avg': [1]}
>>> SECOND_MOMENT.category, SECOND_MOMENT.non_negative
('moment', True)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "StateKind", "as_kind", "nest", "unnest", "split_key",
    "FIRST_MOMENT", "SECOND_MOMENT", "GRADIENT", "PROJECTION", "INDEX", "COUNTER", "RNG", "HISTORY", "SCALE", "NORM",
    "ITERATE", "PRECONDITIONER", "widest_kind",
    "ELEMENTWISE", "PER_TENSOR", "WHOLE_MATRIX", "TRANSFORM_KINDS",
]


@dataclass(frozen=True)
class StateKind:
    """The role of one state tensor.

    Args:
        role: what it holds ("first_moment", "second_moment", ...).
        category: the accounting bucket (``state_bytes(by="kind")``).
        non_negative: every value is >= 0 (second moments, norms); a change of basis must keep it so.
        per_element: one value per parameter element (elementwise state that shards and quantizes with
            the parameter), as opposed to per-tensor or per-row scalars, indices and bases.
    """

    role: str
    category: str
    non_negative: bool = False
    per_element: bool = True

    def __str__(self) -> str:
        return self.role


FIRST_MOMENT = StateKind("first_moment", "moment")
SECOND_MOMENT = StateKind("second_moment", "moment", non_negative=True)
GRADIENT = StateKind("gradient_copy", "gradient")
PROJECTION = StateKind("projection", "projection", per_element=False)
INDEX = StateKind("index", "index", per_element=False)
COUNTER = StateKind("counter", "counter", non_negative=True, per_element=False)
RNG = StateKind("rng_seed", "rng", per_element=False)
HISTORY = StateKind("history", "history", per_element=False)
SCALE = StateKind("scale", "scale", per_element=False)
NORM = StateKind("norm", "norm", non_negative=True, per_element=False)
#: a point in parameter space (Schedule-Free's z, Prodigy's initial point): one value per element
ITERATE = StateKind("iterate", "iterate")
#: a per-dimension matrix or vector of a Kronecker-factored preconditioner (factors, their roots, eigenbases)
PRECONDITIONER = StateKind("preconditioner", "preconditioner", per_element=False)

_BY_NAME = {k.category: k for k in (FIRST_MOMENT, GRADIENT, PROJECTION, INDEX, COUNTER, RNG, HISTORY, SCALE, NORM,
                                    ITERATE, PRECONDITIONER)}
_BY_NAME.update({k.role: k for k in (FIRST_MOMENT, SECOND_MOMENT, GRADIENT, PROJECTION, INDEX, COUNTER, RNG, HISTORY,
                                      SCALE, NORM, ITERATE, PRECONDITIONER)})

# The three kinds of transform (how far its arithmetic reaches), for sharding, quantization and fusion.
#: each output element depends only on the same element of the inputs and state
ELEMENTWISE = "elementwise"
#: needs reductions over each tensor (or over the group) before going elementwise again
PER_TENSOR = "per_tensor_reduction"
#: needs each matrix whole (orthogonalization, bases from SVD/QR)
WHOLE_MATRIX = "whole_matrix"
TRANSFORM_KINDS = (ELEMENTWISE, PER_TENSOR, WHOLE_MATRIX)


def widest_kind(*kinds: str) -> str:
    """The kind that reaches furthest (a wrapper's kind given its own and its inner transforms')."""
    return max(kinds, key=TRANSFORM_KINDS.index, default=ELEMENTWISE)


def as_kind(kind: Any) -> StateKind:
    """A :class:`StateKind` from a kind or its role/category name ("moment" is a first moment)."""
    if isinstance(kind, StateKind):
        return kind
    if kind in _BY_NAME:
        return _BY_NAME[kind]
    raise ValueError(f"unknown state kind {kind!r}; known: {sorted(_BY_NAME)} or a gradkit.core.state.StateKind")


def nest(label: str, state: dict[str, Any]) -> dict[str, Any]:
    """An inner transform's state under ``label``: key ``k`` becomes ``"label.k"``."""
    return {f"{label}.{key}": value for key, value in state.items()}


def unnest(label: str, state: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``state`` under ``label``, with the label removed (the inverse of :func:`nest`)."""
    prefix = label + "."
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def split_key(key: str) -> tuple[str, str]:
    """``"label.rest"`` -> ``("label", "rest")``; a key without a label -> ``("", key)``."""
    label, dot, rest = key.partition(".")
    return (label, rest) if dot else ("", key)
