"""Expected Gradients: Integrated Gradients averaged over baselines drawn from the data.

Gabriel Erion, Joseph D. Janizek, Pascal Sturmfels, Scott M. Lundberg, Su-In Lee. "Improving
performance of deep learning models with axiomatic attribution priors and expected gradients".
Nature Machine Intelligence 3, 620-631 (2021), arXiv:1906.10670.
Official code: https://github.com/suinleelab/attributionpriors.

    EG_i(x) = E_{x' ~ D, a ~ U(0, 1)} [ (x_i - x'_i) d f(x' + a (x - x')) / dx_i ]

estimated with ``samples`` draws of ``(x', a)`` per input, all in one batched backward pass. The
same estimator is Captum's ``GradientShap`` with ``stdevs=0``; given the same reference indices and
interpolation points (``reference_indices``, ``alphas``) the numbers match.
"""
from __future__ import annotations

import torch

from gradkit.registry import register_attribution

from ._common import Model, Target, check_inputs, check_positive_int, input_gradient, repeat_target, resolve_target

__all__ = ["expected_gradients"]


@register_attribution("eg", summary="integrated gradients averaged over baselines drawn from the data",
                      reference="Erion et al., Improving performance of deep learning models with axiomatic attribution priors and expected gradients, Nature Machine Intelligence 2021, arXiv:1906.10670; https://github.com/suinleelab/attributionpriors")
def expected_gradients(
    model: Model,
    inputs: torch.Tensor,
    target: Target = None,
    *,
    references: torch.Tensor,
    samples: int = 64,
    reference_indices: torch.Tensor | None = None,
    alphas: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    create_graph: bool = False,
) -> torch.Tensor:
    """Expected Gradients of the target score, shape of ``inputs``.

    Args:
        references: the data set baselines are drawn from, ``(M, ...)`` (same feature shape as ``inputs``).
        samples: draws per input (ignored when ``reference_indices``/``alphas`` are given).
        reference_indices: optional ``(N, samples)`` indices into ``references``.
        alphas: optional ``(N, samples)`` interpolation points in [0, 1].
        generator: random generator for the draws (default: torch's global one).
        create_graph: keep the graph, so the attributions are differentiable with respect to the
            model's parameters (needed by attribution priors, see ``attribution_prior``).
    """
    x = check_inputs(inputs)
    n = x.shape[0]
    if not isinstance(references, torch.Tensor):
        raise TypeError(f"references must be a tensor (M, ...) of baseline samples, got {type(references).__name__}")
    if references.dim() != x.dim() or references.shape[1:] != x.shape[1:] or references.shape[0] < 1:
        raise ValueError(f"references must have shape (M, {', '.join(map(str, x.shape[1:]))}) with M >= 1, got {tuple(references.shape)}")
    refs = references.detach().to(dtype=x.dtype, device=x.device)
    if reference_indices is None:
        check_positive_int("samples", samples)
        idx = torch.randint(refs.shape[0], (n, samples), generator=generator, device=x.device)
    else:
        idx = torch.as_tensor(reference_indices, device=x.device).long()
    if alphas is None:
        a = torch.rand(tuple(idx.shape), generator=generator, dtype=x.dtype, device=x.device)
    else:
        a = torch.as_tensor(alphas, dtype=x.dtype, device=x.device)
    if idx.dim() != 2 or idx.shape[0] != n:
        raise ValueError(f"reference_indices must have shape (N={n}, samples), got {tuple(idx.shape)}")
    if a.shape != idx.shape:
        raise ValueError(f"alphas must have the shape of reference_indices {tuple(idx.shape)}, got {tuple(a.shape)}")
    if idx.numel() and (idx.min() < 0 or idx.max() >= refs.shape[0]):
        raise ValueError(f"reference_indices must lie in [0, {refs.shape[0]}), got range [{int(idx.min())}, {int(idx.max())}]")
    k = idx.shape[1]
    base = refs[idx]  # (N, k, ...)
    diff = x.unsqueeze(1) - base
    points = torch.addcmul(base, a.view(a.shape + (1,) * (x.dim() - 1)), diff).reshape((n * k,) + tuple(x.shape[1:]))
    grad = input_gradient(model, points, repeat_target(_detached(resolve_target(model, x, target)), k, interleave=True), create_graph=create_graph)
    return (grad.view(diff.shape) * diff).mean(1)


def _detached(t):
    return None if t is None else t.detach()
