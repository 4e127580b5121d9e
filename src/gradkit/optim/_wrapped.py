"""The delegation an optimizer wrapper shares (GradES, Entropy-SGD, MKOR): it steps another optimizer and shows
that optimizer's param groups and state, so LR schedulers and state inspection work through the wrapper."""
from __future__ import annotations

import torch


class WrappedOptimizer:
    """Base of wrappers that hold ``self.optimizer`` (a ``torch.optim.Optimizer``) and call its step."""

    optimizer: torch.optim.Optimizer

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)
