"""Model-randomisation sanity check: do attributions change when the weights they explain do?

Julius Adebayo, Justin Gilmer, Michael Muelly, Ian Goodfellow, Moritz Hardt, Been Kim. "Sanity
Checks for Saliency Maps". NeurIPS 2018, arXiv:1810.03292. Official code:
https://github.com/adebayoj/sanity_checks_saliency.

Layers are the modules that own parameters directly, in forward (registration) order.
``cascading`` re-initialises them from the output layer down, cumulatively; ``independent``
re-initialises one layer at a time. A re-initialised layer gets its ``reset_parameters()`` (its
default initialisation, batch norm included, as in the paper) under a fixed seed. For each
randomised copy the Spearman rank correlation between the original and the new attributions is
computed per input (on absolute values by default, as the paper reports both); a method that
passes the check shows correlations that fall towards 0. Tied values share their mean rank.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ._common import Target, check_choice, check_inputs, resolve_target

__all__ = ["RandomizationResult", "model_randomization", "spearman"]


@dataclass(frozen=True)
class RandomizationResult:
    """``layers``: the names randomised in this copy; ``correlation``: (N,) Spearman per input."""

    layers: tuple[str, ...]
    correlation: torch.Tensor


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Row-wise ranks of ``(N, P)`` values; tied values share the mean of their ranks."""
    n, p = values.shape
    sorted_values, order = torch.sort(values, dim=1, stable=True)
    new_group = torch.ones_like(sorted_values, dtype=torch.long)
    new_group[:, 1:] = (sorted_values[:, 1:] != sorted_values[:, :-1]).long()
    group = new_group.cumsum(1) - 1 + torch.arange(n, device=values.device).view(-1, 1) * p  # unique per row
    position = torch.arange(p, dtype=torch.float64, device=values.device).expand(n, -1).reshape(-1)
    total = torch.zeros(n * p, dtype=torch.float64, device=values.device).index_add_(0, group.reshape(-1), position)
    count = torch.zeros(n * p, dtype=torch.float64, device=values.device).index_add_(0, group.reshape(-1), torch.ones_like(position))
    mean_rank = (total / count.clamp_min(1))[group]
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Spearman rank correlation of ``(N, ...)`` tensors (ties get average ranks), shape (N,)."""
    ra, rb = _average_ranks(a.flatten(1)), _average_ranks(b.flatten(1))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-300)


def _parametrised_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]


def model_randomization(
    model: nn.Module,
    method: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    target: Target = None,
    *,
    mode: str = "cascading",
    absolute: bool = True,
    seed: int = 0,
    **options,
) -> list[RandomizationResult]:
    """Attributions of ``method`` on randomised copies of ``model``, compared with the original's.

    Returns one result per step: ``cascading`` gives the top layer, then the top two, ... down to
    all layers; ``independent`` gives each layer alone, from the top. ``model`` is never modified.
    """
    check_choice("mode", mode, ("cascading", "independent"))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = check_inputs(inputs)
    layers = _parametrised_layers(model)
    if not layers:
        raise ValueError("model has no parameters to randomise")
    for name, m in layers:
        if not hasattr(m, "reset_parameters"):
            raise TypeError(f"layer {name!r} ({type(m).__name__}) has no reset_parameters() to randomise it with")
    t = resolve_target(model, x, target)
    reference = method(model, x, t, **options).detach()
    reference = reference.abs() if absolute else reference
    names = [name for name, _ in layers][::-1]
    results = []
    for i, name in enumerate(names):
        chosen = names[: i + 1] if mode == "cascading" else [name]
        copy_ = copy.deepcopy(model)
        modules = dict(copy_.named_modules())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            for layer in chosen:
                modules[layer].reset_parameters()
        attr = method(copy_, x, t, **options).detach()
        results.append(RandomizationResult(tuple(chosen), spearman(reference, attr.abs() if absolute else attr)))
    return results
