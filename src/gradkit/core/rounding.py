"""Stochastic rounding of the update written into float16/bfloat16 params (``param_rounding="stochastic"``).

The step computes low-precision params in float32 (:meth:`gradkit.Optimizer.compute_dtype`); writing
them back rounds to the param's dtype. Round-to-nearest loses every update smaller than half a unit in
the last place; stochastic rounding rounds ``x`` up to the next representable value ``b`` with
probability ``(x - a) / (b - a)`` (``a`` the one below), so the written value is ``x`` in expectation.

bfloat16 is the upper half of a float32: adding a uniform 16-bit integer to the float32 bit pattern and
truncating the low 16 bits is exactly that rule. float16 draws a uniform number per element and compares.

The random numbers come from a generator seeded with ``(seed, the param's step count)``: the count is
saved in every state_dict, so a resumed run draws the same numbers and continues bit-identically, with
no generator state to save. (Deviation from keeping a generator's state: the seed is a function of the
step, so no draws carry over between steps.)

Reference: Zamirai et al., "Revisiting BFloat16 Training", arXiv:2010.06192; Gupta et al., "Deep
Learning with Limited Numerical Precision", ICML 2015, arXiv:1502.02551.

>>> r = Rounding.of("stochastic", seed=0)
>>> x = torch.full((10000,), 1.0 + 2 ** -10)
>>> y = r.round([x], torch.bfloat16, [0])[0]
>>> sorted(set(y.float().tolist())), abs(y.float().mean().item() - x[0].item()) < 3e-4
([1.0, 1.0078125], True)
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Rounding", "ROUNDINGS", "stochastic_round"]

ROUNDINGS = ("nearest", "stochastic")


def stochastic_round(x: Tensor, dtype: torch.dtype, generator: torch.Generator | None = None) -> Tensor:
    """``x`` (float32) rounded stochastically to ``dtype`` (bfloat16 or float16): unbiased, ``E[out] = x``.

    >>> g = torch.Generator().manual_seed(0)
    >>> stochastic_round(torch.tensor([1.0, 2.0]), torch.bfloat16, g)
    tensor([1., 2.], dtype=torch.bfloat16)
    """
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be torch.bfloat16 or torch.float16, got {dtype}")
    x = x.float()
    if dtype == torch.bfloat16:
        noise = torch.randint(0, 1 << 16, x.shape, dtype=torch.int32, generator=generator, device=x.device)
        bits = (x.view(torch.int32) + noise).bitwise_and_(-65536)
        out = bits.view(torch.float32)
        return torch.where(torch.isfinite(x), out, x).to(dtype)
    low = x.to(dtype)
    other = torch.nextafter(low, torch.where(x > low.float(), torch.full_like(low, float("inf")),
                                             torch.full_like(low, float("-inf"))))
    gap = other.float() - low.float()
    p = torch.where(gap != 0, (x - low.float()) / gap, torch.zeros_like(x))
    u = torch.rand(x.shape, generator=generator, device=x.device)
    return torch.where(u < p, other, low)


class Rounding:
    """Stochastic rounding with a seed: ``round(values, dtype, steps)`` rounds a list of float32 tensors.

    ``Rounding.of("nearest")`` is ``None`` (the plain copy rounds to nearest)."""

    def __init__(self, seed: int = 0):
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.seed = seed

    @classmethod
    def of(cls, mode: str, seed: int = 0) -> "Rounding | None":
        if mode not in ROUNDINGS:
            raise ValueError(f"param_rounding must be one of {ROUNDINGS}, got {mode!r}")
        return cls(seed) if mode == "stochastic" else None

    def round(self, values: list[Tensor], dtype: torch.dtype, steps: list[int]) -> list[Tensor]:
        """``values`` rounded to ``dtype``: one draw for the whole list, from a generator seeded by the seed,
        the first tensor's step count and the list's sizes."""
        if not values:
            return values
        device = values[0].device
        generator = torch.Generator(device=device)
        generator.manual_seed((self.seed * 1_000_003 + steps[0] * 7919 + len(values) * 104_729
                               + values[0].numel()) % (1 << 63))
        sizes = [v.numel() for v in values]
        flat = stochastic_round(torch.cat([v.reshape(-1) for v in values]), dtype, generator)
        return [part.view(v.shape) for part, v in zip(flat.split(sizes), values)]
