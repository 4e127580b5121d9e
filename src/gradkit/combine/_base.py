"""The aggregator protocol, the per-step context aggregators may read, and the name registry."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from gradkit.registry import AGGREGATORS

__all__ = ["Aggregator", "Context", "AGGREGATORS", "register_aggregator", "get_aggregator"]


@dataclass
class Context:
    """What an aggregator may know about the step besides the Jacobian.

    ``losses`` holds the detached loss values (one per row of the Jacobian) when they are known;
    ``params`` lists the shared parameters in the order their gradients are flattened into the
    Jacobian's columns. The Gramian ``J @ J.T`` is computed once per step and shared between the
    aggregator and the diagnostics.

    Example:
        >>> import torch
        >>> ctx = Context(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
        >>> ctx.gramian()
        tensor([[ 1., -1.],
                [-1.,  2.]])
    """

    jacobian: Tensor
    losses: Tensor | None = None
    params: Sequence[Tensor] | None = None
    _gramian: Tensor | None = field(default=None, repr=False)

    def gramian(self) -> Tensor:
        if self._gramian is None:
            self._gramian = self.jacobian @ self.jacobian.T
        return self._gramian

    def columns(self, params: Sequence[Tensor]) -> Tensor:
        """Column indices of the Jacobian that hold the gradients of ``params`` (a subset of the step's)."""
        if self.params is None:
            raise ValueError("this step has no parameter list; pass params to locate a layer's columns")
        offsets, start = {}, 0
        for p in self.params:
            offsets[id(p)] = (start, p.numel())
            start += p.numel()
        pieces = []
        for p in params:
            if id(p) not in offsets:
                raise ValueError(f"a layer parameter of shape {tuple(p.shape)} is not among the shared params of this step")
            lo, n = offsets[id(p)]
            pieces.append(torch.arange(lo, lo + n, device=self.jacobian.device))
        return torch.cat(pieces)


class Aggregator:
    """Maps a Jacobian (one row per objective, one column per shared parameter entry) to one update.

    A new aggregator subclasses this and implements ``aggregate``; stateful ones also override
    ``state_dict``/``load_state_dict``. ``__call__`` checks the input and may be given a bare
    Jacobian for quick use::

        update = PCGrad(seed=0)(torch.stack([g1, g2]))

    Example (an aggregator that keeps only the first objective):
        >>> import torch
        >>> class First(Aggregator):
        ...     def aggregate(self, jacobian, context):
        ...         return jacobian[0]
        >>> First()(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
        tensor([1., 0.])
    """

    #: The registered name (set by ``register_aggregator``).
    name: str = ""
    #: The number of rows the aggregator accepts: None for any number >= 1, or an exact count.
    num_objectives: int | None = None

    def aggregate(self, jacobian: Tensor, context: Context) -> Tensor:
        raise NotImplementedError

    def __call__(self, jacobian: Tensor, context: Context | None = None) -> Tensor:
        self.check(jacobian)
        if context is None:
            context = Context(jacobian)
        return self.aggregate(jacobian, context)

    def check(self, jacobian: Tensor) -> None:
        if not isinstance(jacobian, Tensor):
            raise TypeError(f"jacobian must be a torch.Tensor, got {type(jacobian).__name__}")
        if jacobian.ndim != 2 or jacobian.shape[0] == 0:
            raise ValueError(f"jacobian must be a 2-D tensor with at least one row, got shape {tuple(jacobian.shape)}")
        if not jacobian.is_floating_point():
            raise TypeError(f"jacobian must have a floating dtype, got {jacobian.dtype}")
        m = self.num_objectives
        if m is not None and jacobian.shape[0] != m:
            raise ValueError(f"{type(self).__name__} combines exactly {m} objectives, got {jacobian.shape[0]}")

    def diagnostics(self) -> dict[str, Any]:
        """Aggregator-specific values from the last step (e.g. learned weights), for Diagnostics.extra."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            raise ValueError(f"{type(self).__name__} is stateless; state_dict must be empty, got keys {sorted(state_dict)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def register_aggregator(name: str, *, summary: str | None = None, reference: str = "") -> Callable[[type[Aggregator]], type[Aggregator]]:
    """Class decorator: make an aggregator available to ``get_aggregator(name)`` and ``gradkit list``.

    The summary defaults to the first line of the class docstring.

    Args:
        name: the registry name (lowercase).
        summary: one line for ``gradkit list``.
        reference: the paper and official code.

    Example (in a new module of ``gradkit/combine/``, which is imported on the first lookup)::

        @register_aggregator("first", summary="the first objective's gradient only")
        class First(Aggregator):
            def aggregate(self, jacobian, context):
                return jacobian[0]

        get_aggregator("first")  # -> First()
    """
    register = AGGREGATORS.register(name, summary=summary, reference=reference)

    def decorate(cls: type[Aggregator]) -> type[Aggregator]:
        register(cls)
        cls.name = name
        return cls

    return decorate


def get_aggregator(name: str, **kwargs: Any) -> Aggregator:
    """A new aggregator by registered name, built with ``kwargs``.

    >>> get_aggregator("mean")(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor([2., 3.])
    """
    return AGGREGATORS.get(name)(**kwargs)
