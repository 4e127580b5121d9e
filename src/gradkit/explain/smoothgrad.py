"""SmoothGrad: average an attribution method over noisy copies of the input.

Daniel Smilkov, Nikhil Thorat, Been Kim, Fernanda Viegas, Martin Wattenberg. "SmoothGrad: removing
noise by adding noise". ICML 2017 workshop, arXiv:1706.03825. Official code:
https://github.com/PAIR-code/saliency.

    SG(x) = 1/S sum_s A(x + e_s),      e_s ~ N(0, sigma^2)
    SG^2(x) = 1/S sum_s A(x + e_s)^2   (``squared=True``, "SmoothGrad-Squared" of Hooker et al.)

The paper sets ``sigma = noise_level * (max(x) - min(x))`` per input (``noise_level`` 0.1-0.2);
``stdev`` gives an absolute sigma instead (Captum's ``stdevs``). The noise tensor is drawn as
``(N, S, ...)`` float32 standard normals, the layout and precision of Captum's ``NoiseTunnel``, so
the same seed gives the same noise and the same numbers.
"""
from __future__ import annotations

from typing import Callable

import torch

from gradkit.registry import register_attribution

from ._common import Model, Target, check_inputs, check_nonnegative, check_positive_int, repeat_target, resolve_target
from .saliency import saliency

__all__ = ["smoothgrad"]

# Options of the wrapped method that hold one entry per input and so follow the noisy copies.
_PER_INPUT_OPTIONS = ("baselines",)


@register_attribution("smoothgrad", summary="an attribution averaged over noisy copies of the input",
                      reference="Smilkov et al., SmoothGrad: removing noise by adding noise, arXiv:1706.03825; https://github.com/PAIR-code/saliency")
def smoothgrad(
    model: Model,
    inputs: torch.Tensor,
    target: Target = None,
    *,
    method: Callable[..., torch.Tensor] = saliency,
    samples: int = 25,
    noise_level: float | None = None,
    stdev: float | None = None,
    squared: bool = False,
    samples_batch_size: int | None = None,
    generator: torch.Generator | None = None,
    **options,
) -> torch.Tensor:
    """SmoothGrad of any attribution ``method`` (called as ``method(model, x, target, **options)``).

    Args:
        samples: noisy copies per input.
        noise_level: sigma as a fraction of each input's value range; 0.15 when neither this nor
            ``stdev`` is given.
        stdev: absolute sigma (give ``noise_level`` or ``stdev``, not both).
        squared: average the squared attributions (SmoothGrad-Squared).
        samples_batch_size: at most this many copies of each input per call of ``method``.
        generator: random generator of the noise (default: torch's global one).
        options: passed to ``method``; a per-input ``baselines`` tensor ``(N, ...)`` is repeated
            with the copies.
    """
    x = check_inputs(inputs)
    n = x.shape[0]
    check_positive_int("samples", samples)
    chunk = samples if samples_batch_size is None else check_positive_int("samples_batch_size", samples_batch_size)
    if noise_level is not None and stdev is not None:
        raise ValueError(f"give noise_level or stdev, not both (got noise_level={noise_level}, stdev={stdev})")
    if not callable(method):
        raise TypeError(f"method must be an attribution function method(model, inputs, target, **options), got {method!r}")
    if stdev is not None:
        sigma = torch.tensor(check_nonnegative("stdev", stdev), dtype=x.dtype, device=x.device)
    else:
        level = check_nonnegative("noise_level", 0.15 if noise_level is None else noise_level)
        flat = x.flatten(1)
        sigma = (level * (flat.amax(1) - flat.amin(1))).view((n, 1) + (1,) * (x.dim() - 1))
    t = resolve_target(model, x, target)
    # float32 draws whatever the input's dtype: Captum's precision, hence its stream of numbers
    noise = torch.randn((n, samples) + tuple(x.shape[1:]), generator=generator, dtype=torch.float32, device=x.device).to(x.dtype) * sigma
    noisy = x.unsqueeze(1) + noise
    total = None
    for start in range(0, samples, chunk):
        k = min(chunk, samples - start)
        batch = noisy[:, start : start + k].reshape((n * k,) + tuple(x.shape[1:]))
        opts = {name: _repeat_per_input(name, value, x.dim(), n, k) for name, value in options.items()}
        attr = method(model, batch, repeat_target(t, k, interleave=True), **opts)
        if isinstance(attr, tuple):
            raise TypeError("method must return the attributions alone; do not ask it for extra outputs inside smoothgrad")
        attr = attr.view((n, k) + tuple(attr.shape[1:]))
        part = (attr * attr if squared else attr).sum(1)
        total = part if total is None else total + part
    return total / samples


def _repeat_per_input(name: str, value, dim: int, n: int, k: int):
    if name in _PER_INPUT_OPTIONS and isinstance(value, torch.Tensor) and value.dim() == dim and value.shape[0] == n and n > 1:
        return value.repeat_interleave(k, dim=0)
    return value
