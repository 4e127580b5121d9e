"""Few-Bit Backward: activations that save a few-bit code of their derivative instead of their input.

Novikov, Bershatsky, Gusak, Shonenkov, Dimitrov & Oseledets, "Few-Bit Backward: Quantized Gradients of
Activation Functions for Memory Footprint Reduction", ICML 2023, arXiv:2202.00441; official code
https://github.com/SkoltechAI/fewbit.

An elementwise activation ``y = f(x)`` normally keeps ``x`` (32 bits per element) for its backward pass
``dx = f'(x) dy``. Here ``f'`` is replaced by a piecewise-constant ``q`` with ``2^b`` levels: the forward
pass keeps only the level's index (``b`` bits per element, packed into uint8) and the backward pass is

    dx = q(x) dy,   q(x) = c_k  for  t_{k-1} <= x < t_k   (t_0 = -inf, t_{2^b} = +inf)

The boundaries ``t`` and levels ``c`` minimise the weighted L2 error ``int (f'(x) - q(x))^2 w(x) dx``: for
fixed boundaries each level is the weighted mean of ``f'`` on its interval, and the boundaries are found by
dynamic programming (optimal segmentation into ``2^b`` intervals) over a fine grid of cells, exact on that
grid (``fewbit_levels``). Deviation / choice: the weight ``w`` is the standard normal density (pre-activations
of a normalised network) on ``[-8, 8]`` cut into 2,048 cells; boundaries lie on cell edges. The forward
output is the exact ``f(x)``; ``bits`` is 1, 2, 4 or 8 (codes packed 8, 4, 2 or 1 per byte; the paper
also uses 3 bits, which does not pack evenly into bytes and is not offered).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fewbit_levels", "FewBitActivation", "fewbit_activation", "convert_activations", "pack_codes",
           "unpack_codes", "ACTIVATIONS", "BITS"]

BITS = (1, 2, 4, 8)


def _gelu_grad(x):
    return 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _silu_grad(x):
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _tanh_grad(x):
    return 1 - torch.tanh(x) ** 2


def _sigmoid_grad(x):
    s = torch.sigmoid(x)
    return s * (1 - s)


# name -> (the function, its derivative)
ACTIVATIONS = {
    "gelu": (F.gelu, _gelu_grad),
    "silu": (F.silu, _silu_grad),
    "tanh": (torch.tanh, _tanh_grad),
    "sigmoid": (torch.sigmoid, _sigmoid_grad),
}


def _check(activation, bits) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
    if isinstance(bits, bool) or bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits!r}")


def optimal_segments(values: torch.Tensor, weights: torch.Tensor, segments: int) -> tuple[list[int], float]:
    """Cut cells ``0..n-1`` into ``segments`` contiguous runs minimising ``sum w (v - mean_run)^2``.

    Dynamic programme over prefix sums (``O(segments n^2)``, vectorised over the n x n cost matrix).
    Returns the cut positions (``segments - 1`` indices into the cells, increasing) and the minimum error.

    >>> v = torch.tensor([0., 0., 1., 1., 1., 5.], dtype=torch.float64)
    >>> optimal_segments(v, torch.ones(6, dtype=torch.float64), 3)
    ([2, 5], 0.0)
    """
    n = values.numel()
    if not 1 <= segments <= n:
        raise ValueError(f"segments must be in [1, {n}] (the number of cells), got {segments}")
    z = values.new_zeros(1)
    cw = torch.cat([z, weights.cumsum(0)])
    cs = torch.cat([z, (weights * values).cumsum(0)])
    cq = torch.cat([z, (weights * values * values).cumsum(0)])
    w = cw[None, :] - cw[:, None]  # [i, j]: cells i..j-1
    s = cs[None, :] - cs[:, None]
    q = cq[None, :] - cq[:, None]
    valid = torch.ones(n + 1, n + 1, dtype=torch.bool).triu(1)
    # w can round to 0 for runs of far-tail cells (prefix sums near 1): such a run costs nothing
    filled = valid & (w > 0)
    cost = torch.where(filled, (q - s * s / w.where(filled, torch.ones_like(w))).clamp_min(0), 0.0)
    cost = cost.where(valid, torch.inf)
    best = cost[0]  # one run covering cells 0..j-1
    choices = []
    for _ in range(segments - 1):
        total = best[:, None] + cost
        best, arg = total.min(0)
        choices.append(arg)
    cuts, j = [], n
    for arg in reversed(choices):
        j = int(arg[j])
        cuts.append(j)
    return sorted(cuts), float(best[n])


@lru_cache(maxsize=None)
def _levels(activation: str, bits: int, cells: int, limit: float):
    edges = torch.linspace(-limit, limit, cells + 1, dtype=torch.float64)
    mid = (edges[1:] + edges[:-1]) / 2
    weights = torch.exp(-0.5 * mid * mid) * (edges[1] - edges[0]) / math.sqrt(2 * math.pi)
    values = ACTIVATIONS[activation][1](mid)
    cuts, _ = optimal_segments(values, weights, 2 ** bits)
    bounds = [0, *cuts, cells]
    levels = torch.stack([(weights[a:b] * values[a:b]).sum() / weights[a:b].sum() for a, b in zip(bounds, bounds[1:])])
    return edges[cuts].float(), levels.float()


def fewbit_levels(activation: str, bits: int, cells: int = 2048, limit: float = 8.0):
    """The optimal boundaries (``2^bits - 1``, increasing) and levels (``2^bits``) for ``activation``'s derivative.

    Args:
        activation: one of ``ACTIVATIONS`` (gelu, silu, tanh, sigmoid).
        bits: 1, 2, 4 or 8.
        cells, limit: the grid of the dynamic programme (``cells`` cells on ``[-limit, limit]``).

    Math: minimise ``int (f'(x) - q(x))^2 phi(x) dx`` over piecewise-constant ``q`` with ``2^bits`` pieces.
    Computed once per (activation, bits, grid) and cached; 8 bits (255 stages of the programme) takes seconds.

    >>> t, c = fewbit_levels("gelu", 1)
    >>> t.shape, c.shape, bool(c[0] < 0.2 < 0.9 < c[1])
    (torch.Size([1]), torch.Size([2]), True)
    """
    _check(activation, bits)
    t, c = _levels(activation, bits, int(cells), float(limit))
    return t.clone(), c.clone()


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integer codes in ``[0, 2^bits)`` into a flat uint8 tensor, ``8 // bits`` per byte.

    >>> pack_codes(torch.tensor([1, 0, 3, 2]), 2)
    tensor([177], dtype=torch.uint8)
    >>> unpack_codes(pack_codes(torch.tensor([1, 0, 3, 2, 1]), 2), 2, 5)
    tensor([1, 0, 3, 2, 1], dtype=torch.uint8)
    """
    if isinstance(bits, bool) or bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits!r}")
    per = 8 // bits
    flat = codes.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % per
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    if per == 1:
        return flat
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=flat.device)
    return (flat.view(-1, per) << shifts).sum(1, dtype=torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """The first ``numel`` codes of ``pack_codes``'s output (uint8)."""
    per = 8 // bits
    if per == 1:
        return packed[:numel]
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=packed.device)
    return ((packed[:, None] >> shifts) & (2 ** bits - 1)).reshape(-1)[:numel]


class _FewBit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fn, boundaries, levels, bits):
        codes = torch.bucketize(x.detach(), boundaries.to(x.dtype), right=True)
        ctx.save_for_backward(pack_codes(codes, bits))
        ctx.meta = (x.shape, bits, levels)
        return fn(x)

    @staticmethod
    def backward(ctx, grad_out):
        (packed,) = ctx.saved_tensors
        shape, bits, levels = ctx.meta
        codes = unpack_codes(packed, bits, math.prod(shape)).long().view(shape)
        return levels.to(grad_out.device, grad_out.dtype)[codes] * grad_out, None, None, None, None


def fewbit_activation(x: torch.Tensor, activation: str = "gelu", bits: int = 2) -> torch.Tensor:
    """``f(x)`` exactly, with the backward ``q(x) * grad_out`` from a ``bits``-bit code saved in the forward.

    >>> x = torch.linspace(-3, 3, 7, requires_grad=True)
    >>> y = fewbit_activation(x, "gelu", bits=1); torch.equal(y, torch.nn.functional.gelu(x))
    True
    >>> y.sum().backward(); t, c = fewbit_levels("gelu", 1)
    >>> torch.equal(x.grad, torch.where(x.detach() >= t[0], c[1], c[0]))
    True
    """
    boundaries, levels = fewbit_levels(activation, bits)
    if not x.requires_grad or not torch.is_grad_enabled():
        return ACTIVATIONS[activation][0](x)
    return _FewBit.apply(x, ACTIVATIONS[activation][0], boundaries.to(x.device), levels.to(x.device), bits)


class FewBitActivation(nn.Module):
    """Drop-in module for ``nn.GELU`` / ``nn.SiLU`` / ``nn.Tanh`` / ``nn.Sigmoid`` saving ``bits`` per element.

    >>> m = FewBitActivation("silu", bits=4); m
    FewBitActivation(activation=silu, bits=4)
    >>> x = torch.randn(5, requires_grad=True); torch.equal(m(x), torch.nn.functional.silu(x))
    True
    """

    def __init__(self, activation: str = "gelu", bits: int = 2):
        super().__init__()
        _check(activation, bits)
        self.activation, self.bits = activation, bits
        fewbit_levels(activation, bits)  # computed (and cached) now, not in the first forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fewbit_activation(x, self.activation, self.bits)

    def extra_repr(self) -> str:
        return f"activation={self.activation}, bits={self.bits}"


_MODULES = {nn.GELU: "gelu", nn.SiLU: "silu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}


def convert_activations(model: nn.Module, bits: int = 2) -> list[str]:
    """Replace every ``nn.GELU`` (exact form), ``nn.SiLU``, ``nn.Tanh``, ``nn.Sigmoid`` in ``model`` by a
    ``FewBitActivation`` with ``bits``; returns the replaced modules' names. A tanh-approximated ``nn.GELU``
    is refused (its derivative differs) before anything is replaced.

    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.GELU(), torch.nn.Linear(2, 1))
    >>> convert_activations(net, bits=2), net[1]
    (['1'], FewBitActivation(activation=gelu, bits=2))
    """
    _check("gelu", bits)
    found = [(n, m) for n, m in model.named_modules() if type(m) in _MODULES and n]
    bad = [n for n, m in found if isinstance(m, nn.GELU) and m.approximate != "none"]
    if bad:
        raise ValueError(f"nn.GELU(approximate='tanh') has no few-bit form here (its derivative differs): {bad}")
    modules = dict(model.named_modules())
    for name, m in found:
        parent_name, _, child = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, child, FewBitActivation(_MODULES[type(m)], bits))
    return [n for n, _ in found]
