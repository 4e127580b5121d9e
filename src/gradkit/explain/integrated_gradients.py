"""Integrated Gradients: the path integral of the gradient from a baseline to the input.

Mukund Sundararajan, Ankur Taly, Qiqi Yan. "Axiomatic Attribution for Deep Networks". ICML 2017,
arXiv:1703.01365. Official code: https://github.com/ankurtaly/Integrated-Gradients.

    IG_i(x) = (x_i - x'_i) * int_0^1 d f(x' + a (x - x')) / dx_i da
            ~ (x_i - x'_i) * sum_k w_k d f(x' + a_k (x - x')) / dx_i

Completeness: ``sum_i IG_i(x) = f(x) - f(x')``; the quadrature's shortfall is the completeness
error returned with ``return_error=True`` (Captum's "convergence delta", same sign).

Quadrature rules (``method``), for ``steps = n``:

* ``riemann_left``, ``riemann_right``, ``riemann_middle``: weights ``1/n`` at ``a_k = k/n``,
  ``(k+1)/n``, ``(k+1/2)/n``; the same points and weights as Captum.
* ``riemann_trapezoid``: ``a_k = k/(n-1)``, weights ``1/(n-1)`` halved at both ends, i.e. the
  trapezoid rule. Departure from Captum: Captum uses weights ``1/n`` (halved at both ends), which
  sum to ``(n-1)/n`` instead of 1, so its result is exactly ``(n-1)/n`` times this one.
* ``gausslegendre`` (default, as in Captum): the n-point Gauss-Legendre rule on [0, 1]; nodes and
  weights come from the eigen-decomposition of the Jacobi matrix (Golub-Welsch) in float64.
"""
from __future__ import annotations

import torch

from gradkit.registry import register_attribution

from ._common import Model, Target, as_baseline, check_choice, check_inputs, check_positive_int, input_gradient, repeat_target, resolve_target, select

__all__ = ["integrated_gradients", "path_rule", "PATH_METHODS"]

PATH_METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def path_rule(method: str, steps: int, dtype: torch.dtype = torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``a`` in [0, 1] and weights ``w`` (summing to 1) of a quadrature rule on [0, 1]."""
    check_choice("method", method, PATH_METHODS)
    check_positive_int("steps", steps, 2 if method == "riemann_trapezoid" else 1)
    n = steps
    k = torch.arange(n, dtype=torch.float64)
    if method == "gausslegendre":
        j = torch.arange(1, n, dtype=torch.float64)
        off = j / torch.sqrt(4 * j * j - 1)
        nodes, vectors = torch.linalg.eigh(torch.diag(off, 1) + torch.diag(off, -1))
        alphas, weights = 0.5 * (nodes + 1), vectors[0] ** 2  # Legendre weights are 2 v0^2 on [-1, 1]
    elif method == "riemann_trapezoid":
        alphas = k / (n - 1)
        weights = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        weights[0] *= 0.5
        weights[-1] *= 0.5
    else:
        shift = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
        alphas = (k + shift) / n
        weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    return alphas.to(dtype=dtype, device=device), weights.to(dtype=dtype, device=device)


@register_attribution("ig", summary="path integral of the gradient from a baseline to the input",
                      reference="Sundararajan et al., Axiomatic Attribution for Deep Networks, ICML 2017, arXiv:1703.01365; https://github.com/ankurtaly/Integrated-Gradients")
def integrated_gradients(
    model: Model,
    inputs: torch.Tensor,
    target: Target = None,
    *,
    baselines=None,
    steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
    return_error: bool = False,
    create_graph: bool = False,
):
    """Integrated Gradients of ``model``'s target score, shape of ``inputs``.

    Args:
        baselines: ``None`` (zeros), a number, or a tensor of shape ``(...)``, ``(1, ...)`` or
            ``(N, ...)``.
        steps: number of path points.
        method: quadrature rule, one of ``PATH_METHODS``.
        internal_batch_size: at most this many path points (counting every input) per forward
            pass; ``None`` evaluates the whole path in one pass. Must be at least ``N``.
        return_error: also return the completeness error ``sum(IG) - (f(x) - f(baseline))``, ``(N,)``.
        create_graph: keep the graph so the attributions can be differentiated again.

    Example::

        >>> import torch
        >>> model = torch.nn.Linear(3, 2)
        >>> x = torch.randn(4, 3)
        >>> attr, err = integrated_gradients(model, x, target=1, steps=8, return_error=True)
        >>> bool(err.abs().max() < 1e-5)   # a linear model is integrated exactly
        True
    """
    x = check_inputs(inputs)
    n = x.shape[0]
    b = as_baseline(baselines, x)
    t = resolve_target(model, x, target)
    alphas, weights = path_rule(method, steps, dtype=x.dtype, device=x.device)
    if internal_batch_size is None:
        chunk = steps
    else:
        check_positive_int("internal_batch_size", internal_batch_size, n)
        chunk = internal_batch_size // n
    diff = x - b
    view = (-1,) + (1,) * x.dim()
    total = None
    for start in range(0, steps, chunk):
        a, w = alphas[start : start + chunk], weights[start : start + chunk]
        k = a.shape[0]
        # step-major layout: rows [s * N + i] hold sample i at path point s
        points = torch.addcmul(b.unsqueeze(0), a.view(view), diff.unsqueeze(0)).reshape((k * n,) + tuple(x.shape[1:]))
        grad = input_gradient(model, points, repeat_target(t, k, interleave=False), w.repeat_interleave(n), create_graph)
        part = grad.view((k,) + tuple(x.shape)).sum(0)
        total = part if total is None else total + part
    attributions = total * diff
    if not return_error:
        return attributions
    with torch.no_grad():
        ends = select(model(torch.cat((x, b.expand_as(x)))), None if t is None else t.repeat(2))
    error = attributions.detach().flatten(1).sum(1) - (ends[:n] - ends[n:])
    return attributions, error
