"""What a task is: a model factory, data, a loss, metrics and a default budget."""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
from torch import nn

__all__ = ["Task"]

# Options every task has; a task adds its own in ``options``.
BUDGET_OPTIONS = {"steps": int, "eval_every": int, "batch_size": int}


class Task:
    """Base class of the arena's tasks.

    A subclass sets the class attributes and implements :meth:`load`, :meth:`build_model`,
    :meth:`sample`, :meth:`losses` and :meth:`evaluate`. Keyword arguments of the constructor
    (``--task digits-mlp:hidden=128,steps=300``) override ``defaults``; unknown ones are an error.

    Randomness: the runner seeds torch's global generator before :meth:`build_model` (so every
    optimizer starts from the same weights) and passes its own generator to :meth:`sample` (so every
    optimizer sees the same batches in the same order).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    metric: ClassVar[str]
    higher_is_better: ClassVar[bool]
    #: Names of the losses :meth:`losses` returns; more than one makes it a multi-task problem
    #: whose gradients an aggregator combines.
    loss_names: ClassVar[tuple[str, ...]] = ("loss",)
    #: True for 2-D toy problems whose parameter trajectory is recorded and plotted.
    trajectory: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any):
        known = dict(self.defaults)
        for key, value in options.items():
            if key not in known:
                raise ValueError(f"task {self.name!r}: unknown option {key!r}; options: {', '.join(sorted(known))}")
            expected = type(known[key])
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise TypeError(f"task {self.name!r}: option {key!r} must be {expected.__name__}, got {value!r}")
            known[key] = value
        for key in BUDGET_OPTIONS:
            if key in known and known[key] < 1:
                raise ValueError(f"task {self.name!r}: {key} must be >= 1, got {known[key]}")
        self.options = known
        self.steps: int = known["steps"]
        self.eval_every: int = known["eval_every"]
        self.batch_size: int = known["batch_size"]

    @property
    def multi_loss(self) -> bool:
        return len(self.loss_names) > 1

    # -- to implement -------------------------------------------------------------------------
    def load(self, device: torch.device) -> Any:
        """Data for training and evaluation, already on ``device``; built once per task."""
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def sample(self, data: Any, generator: torch.Generator) -> Any:
        """One training batch; randomness only from ``generator``."""
        raise NotImplementedError

    def losses(self, model: nn.Module, batch: Any) -> torch.Tensor | Sequence[torch.Tensor]:
        """The training loss (a scalar), or one scalar per entry of ``loss_names``."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, data: Any, split: str) -> dict[str, float]:
        """``{"loss": ..., "metric": ..., **extras}`` on ``split`` ("train" or "val"), without gradients."""
        raise NotImplementedError

    # -- optional -----------------------------------------------------------------------------
    def shared_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Multi-task only: the parameters every loss depends on (the trunk)."""
        return [p for p in model.parameters() if p.requires_grad]

    def surface(self) -> dict[str, Any] | None:
        """2-D toy problems: a grid of loss values for contour plots (``x``, ``y``, ``z``, ``optimum``)."""
        return None
