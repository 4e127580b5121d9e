"""Plain sum and mean of the objectives' gradients: the baselines every other aggregator is compared with."""
from __future__ import annotations

from torch import Tensor

from ._base import Aggregator, Context, register_aggregator

__all__ = ["Sum", "Mean"]


@register_aggregator("sum")
class Sum(Aggregator):
    """``sum_i g_i``: the gradient of the summed loss, what ``sum(losses).backward()`` gives.

    Example (two conflicting gradients as the rows of a Jacobian):
        >>> import torch
        >>> from gradkit.combine import Sum
        >>> Sum()(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
        tensor([0., 1.])
    """

    def aggregate(self, jacobian: Tensor, context: Context) -> Tensor:
        return jacobian.sum(dim=0)


@register_aggregator("mean")
class Mean(Aggregator):
    """``(1/m) sum_i g_i``: the gradient of the averaged loss.

    Example (two conflicting gradients as the rows of a Jacobian):
        >>> import torch
        >>> from gradkit.combine import Mean
        >>> Mean()(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
        tensor([0.0000, 0.5000])
    """

    def aggregate(self, jacobian: Tensor, context: Context) -> Tensor:
        return jacobian.mean(dim=0)
