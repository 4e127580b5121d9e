"""Attribution priors: penalties on Expected-Gradients attributions, added to a training loss.

Gabriel Erion, Joseph D. Janizek, Pascal Sturmfels, Scott M. Lundberg, Su-In Lee. "Improving
performance of deep learning models with axiomatic attribution priors and expected gradients".
Nature Machine Intelligence 3, 620-631 (2021), arXiv:1906.10670.
Official code: https://github.com/suinleelab/attributionpriors.

The training objective is ``loss(model) + lam * Omega(EG(model, x))``. The attributions are computed
with ``create_graph=True``, so ``Omega`` is differentiable with respect to the model's parameters
and ``backward()`` on the sum trains both terms. As in the paper (and the official code), a single
draw per input (``samples=1``) with references taken from the training batch is enough, since the
estimator is averaged over the many steps of training.

Priors here:

* ``"smoothness"``: the paper's pixel prior, the total variation of the attribution map
  ``sum |phi[i+1, j] - phi[i, j]| + |phi[i, j+1] - phi[i, j]|`` over the last two dimensions (and
  every channel), averaged over the batch.
* ``"sparsity"``: the paper's sparsity prior, minus the Gini coefficient of the mean absolute
  attribution of each feature over the batch (minimising it concentrates attribution on few features).

The paper's graph prior for tabular data needs a feature graph; pass any callable
``prior(attributions) -> scalar`` for that and other priors.
"""
from __future__ import annotations

from typing import Callable, Union

import torch

from ._common import Model, Target
from .expected_gradients import expected_gradients

__all__ = ["attribution_prior", "total_variation_prior", "sparsity_prior", "PRIORS"]


def total_variation_prior(attributions: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the anisotropic total variation over the last two dimensions."""
    if attributions.dim() < 3:
        raise ValueError(f"the smoothness prior needs image-shaped attributions (N, ..., H, W), got shape {tuple(attributions.shape)}")
    dh = (attributions[..., 1:, :] - attributions[..., :-1, :]).abs().flatten(1).sum(1)
    dw = (attributions[..., :, 1:] - attributions[..., :, :-1]).abs().flatten(1).sum(1)
    return (dh + dw).mean()


def sparsity_prior(attributions: torch.Tensor) -> torch.Tensor:
    """Minus the Gini coefficient of the batch's mean absolute attribution per feature."""
    v = attributions.abs().mean(0).flatten()
    v, _ = torch.sort(v)
    m = v.numel()
    rank = torch.arange(1, m + 1, dtype=v.dtype, device=v.device)
    gini = ((2 * rank - m - 1) * v).sum() / (m * v.sum()).clamp_min(torch.finfo(v.dtype).tiny)
    return -gini


PRIORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"smoothness": total_variation_prior, "sparsity": sparsity_prior}


def attribution_prior(
    model: Model,
    inputs: torch.Tensor,
    target: Target,
    *,
    references: torch.Tensor,
    prior: Union[str, Callable[[torch.Tensor], torch.Tensor]] = "smoothness",
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The prior's penalty on Expected-Gradients attributions: a scalar with a graph to the parameters.

    Example (one training step)::

        >>> import torch, torch.nn.functional as F
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
        >>> loss = F.cross_entropy(model(x), y) + 0.1 * attribution_prior(model, x, y, references=x.flip(0))
        >>> loss.backward()
        >>> model[1].weight.grad is not None
        True
    """
    if isinstance(prior, str):
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {tuple(PRIORS)} or a callable, got {prior!r}")
        prior = PRIORS[prior]
    elif not callable(prior):
        raise TypeError(f"prior must be one of {tuple(PRIORS)} or a callable, got {type(prior).__name__}")
    attributions = expected_gradients(model, inputs, target, references=references, samples=samples, generator=generator, create_graph=True)
    return prior(attributions)
