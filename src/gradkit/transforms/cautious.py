"""Cautious masking: zero the components of an update that disagree in sign with the gradient.

Liang, Chen, Liu & Liu, "Cautious Optimizers: Improving Training with One Line of Code", arXiv:2411.16085;
official code https://github.com/kyleliang919/C-Optim.

For the update ``u = inner(g)`` of one tensor with ``n`` elements (Algorithm 2 of the paper, and
``mask * (mask.numel() / (mask.sum() + 1))`` in the official code)::

    phi = 1[u * g > 0]                       (elementwise)
    u  <- u * phi * n / (sum(phi) + 1)

The rescaling keeps the average step size of the tensor; the ``+ 1`` is the official code's guard
against an empty mask (the paper writes ``n / nnz(phi)``). ``u`` is the update the wrapped transform
produces before the learning rate (its sign is the direction the step moves against), so the recipe
puts ``cautious(...)`` before ``scale_by_learning_rate``.

Wrapping an Adam-like ``inner`` that leaves ``m / d`` pending (``d > 0``), the mask is computed from
``m`` and applied to it, which is the official C-AdamW form and keeps the single ``addcdiv``. A
decay that ``inner`` leaves pending (``add_decayed_weights`` last in ``inner``) is not masked, as in the
official code, where the decoupled decay is applied outside the mask.
"""
from __future__ import annotations

import torch

from gradkit.core.state import PER_TENSOR, widest_kind
from gradkit.core.transform import GradientTransform, as_inner, init_inner, update_inner
from gradkit.registry import register_transform

__all__ = ["cautious", "Cautious", "cautious_mask"]


def cautious_mask(updates: list, grads: list) -> list:
    """``phi * n / (sum(phi) + 1)`` per tensor, with ``phi = 1[u * g > 0]`` (new tensors, multi-tensor).

    >>> import torch
    >>> cautious_mask([torch.tensor([1.0, -1.0])], [torch.tensor([1.0, 1.0])])
    (tensor([1., 0.]),)
    """
    masks = torch._foreach_mul(updates, grads)
    torch._foreach_sign_(masks)
    torch._foreach_clamp_min_(masks, 0.0)  # {-1, 0, 1} -> {0, 1}
    counts = torch._foreach_norm(masks, ord=1)
    torch._foreach_add_(counts, 1.0)
    torch._foreach_reciprocal_(counts)
    torch._foreach_mul_(counts, [float(m.numel()) for m in masks])
    torch._foreach_mul_(masks, counts)
    return masks


@register_transform(
    "cautious",
    summary="mask the update of any transform where it disagrees in sign with the gradient, rescaled (Cautious)",
    reference="Liang et al., Cautious Optimizers: Improving Training with One Line of Code, arXiv:2411.16085; "
              "https://github.com/kyleliang919/C-Optim",
)
class Cautious(GradientTransform):
    """Wraps ``inner`` (any transform or chain); its state lives under ``inner.`` in this transform's
    namespace (``cautious.inner.adam.exp_avg``).

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.cautious(gradkit.trace(0.0)), gradkit.scale(-1.0)))
    >>> w.grad = torch.tensor([0.5, -0.5]); opt.step(); w.detach()  # u = g agrees with g: scaled by 2 / 3
    tensor([ 0.6667, -1.6667])
    """

    name = "cautious"
    kind = PER_TENSOR  # the mask's count is a reduction over each tensor
    owner_steppable = True  # the mask's count is over one tensor: sharded params step on owner ranks (core/redistribute.py)

    def __init__(self, inner: GradientTransform):
        self.inner = as_inner(inner)
        self.kind = widest_kind(PER_TENSOR, *(t.kind for t in self.inner.transforms))

    def children(self):
        return {"inner": self.inner}

    def validate(self, group):
        self.inner.validate(group)

    def init(self, params, ctx):
        return init_inner("inner", self.inner, params, ctx)

    def scalars(self, group, step):
        return {"inner": self.inner.scalars(group, step)}

    def update(self, updates, state, params, ctx):
        # ``inner`` may write into its input when the chain owns it: keep the gradient apart then.
        grads = ctx.ops.clone(updates) if ctx.owned else updates
        out = update_inner("inner", self.inner, updates, state, params, ctx)
        scale = ctx.scale
        signs = [1.0 if s >= 0 else -1.0 for s in scale] if isinstance(scale, list) else (1.0 if scale >= 0 else -1.0)
        # The sign of the true update is sign(scale) * sign(out) (a pending denominator is positive).
        oriented = grads if signs == 1.0 else torch._foreach_mul(grads, signs)
        masks = cautious_mask(out, oriented)
        # Masked into new tensors: ``out`` may be a state buffer of ``inner``; with a pending quotient
        # they are its new numerator and the denominator stays pending.
        torch._foreach_mul_(masks, out)
        return ctx.fresh(masks)

    def __repr__(self):
        return f"Cautious(inner={self.inner!r})"


cautious = Cautious
