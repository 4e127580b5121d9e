"""A LoRA adapter for ``nn.Linear``: a frozen base weight plus a trainable low-rank product.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685; official code
https://github.com/microsoft/LoRA.

    y = x W0^T + b + s * (x A^T) B^T,    A: (r, in), B: (out, r), s = alpha / r

``A`` starts Kaiming-uniform and ``B`` at zero, so the wrapped layer first computes exactly what the base
layer did. ``merge()`` folds ``s * B A`` into the base weight (one matmul per call instead of three) and
``unmerge()`` takes it out again; both are exact up to float rounding. Initialisations from the gradient
(LoRA-GA, ``gradkit.lora.lora_ga_init``) and the gradient adjustment of LoRA-Pro
(``gradkit.lora.lora_pro_``) work on these modules.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LoRALinear", "apply_lora", "lora_modules"]


class LoRALinear(nn.Module):
    """``base`` (frozen) plus ``(alpha / rank) * B @ A`` (trainable).

    Args:
        base: the ``nn.Linear`` to adapt; its weight and bias are frozen (``requires_grad=False``) and kept
            as they are (the module holds the same tensors).
        rank: ``r >= 1``, at most ``min(in_features, out_features)``.
        alpha: the scale numerator, ``s = alpha / r``; a positive number.

    >>> import torch
    >>> lin = torch.nn.Linear(6, 4)
    >>> lora = LoRALinear(lin, rank=2, alpha=4)
    >>> x = torch.randn(3, 6)
    >>> torch.equal(lora(x), lin(x))            # B = 0: nothing changed yet
    True
    >>> with torch.no_grad():
    ...     _ = lora.lora_B.normal_()
    >>> y = lora(x); lora.merge(); torch.allclose(lora(x), y, atol=1e-5)
    True
    >>> lora.unmerge(); torch.allclose(lora.base.weight, lin.weight) and lora.scaling == 2.0
    True
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float = 1.0):
        super().__init__()
        _check(base, rank, alpha)
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank, self.alpha, self.scaling = rank, float(alpha), float(alpha) / rank
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta(self) -> torch.Tensor:
        """The adapter's weight, ``s * B @ A`` (out, in)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        return y + self.scaling * F.linear(F.linear(x, self.lora_A), self.lora_B)

    @torch.no_grad()
    def merge(self) -> None:
        """``W0 += s B A``; the forward then uses the base layer alone. Refused when already merged."""
        if self.merged:
            raise RuntimeError("the adapter is already merged; call unmerge() first")
        self.base.weight.add_(self.delta())
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """``W0 -= s B A``, the inverse of ``merge``. Refused when not merged."""
        if not self.merged:
            raise RuntimeError("the adapter is not merged")
        self.base.weight.sub_(self.delta())
        self.merged = False

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, alpha={self.alpha:g}"


def _check(base, rank, alpha) -> None:
    if not isinstance(base, nn.Linear):
        raise TypeError(f"base must be a torch.nn.Linear, got {type(base).__name__}")
    limit = min(base.in_features, base.out_features)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= limit:
        raise ValueError(f"rank must be an int in [1, {limit}] (min of in and out features), got {rank!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0 or math.isinf(alpha):
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")


def apply_lora(model: nn.Module, rank: int, alpha: float = 1.0, targets=None) -> list[str]:
    """Replace ``nn.Linear`` submodules of ``model`` by ``LoRALinear`` and freeze every other parameter.

    Args:
        model: changed in place.
        rank, alpha: as for ``LoRALinear``.
        targets: names of the linear modules to wrap (as in ``model.named_modules()``), or ``None`` for
            every ``nn.Linear``. An unknown or non-linear name is refused before anything changes.

    Returns the names of the wrapped modules; afterwards only the adapters' ``A`` and ``B`` train.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> apply_lora(net, rank=2)
    ['0', '2']
    >>> sorted(n for n, p in net.named_parameters() if p.requires_grad)
    ['0.lora_A', '0.lora_B', '2.lora_A', '2.lora_B']
    """
    modules = dict(model.named_modules())
    linear = [n for n, m in modules.items() if isinstance(m, nn.Linear) and n]
    if targets is None:
        names = linear
    else:
        names = list(targets)
        bad = [n for n in names if n not in linear]
        if bad:
            raise ValueError(f"targets must name nn.Linear submodules of the model; not linear or unknown: {bad}; "
                             f"linear modules: {linear}")
    if not names:
        raise ValueError("the model has no nn.Linear submodule to adapt")
    for name in names:
        _check(modules[name], rank, alpha)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, child, LoRALinear(modules[name], rank, alpha))
    return names


def lora_modules(model: nn.Module) -> list[LoRALinear]:
    """Every ``LoRALinear`` in ``model`` (in ``named_modules`` order), or ``model`` itself if it is one."""
    return [m for m in model.modules() if isinstance(m, LoRALinear)]
