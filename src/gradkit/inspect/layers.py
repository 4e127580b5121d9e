"""Per-layer gradient norms, update-to-weight ratios and effective step sizes.

The effective step size of a scale-invariant weight (one followed by a normalisation layer, so
that L(c w) = L(w) for c > 0) is what the AdamP paper measures: Heo, Chun, Oh, Han, Yun, Kim, Uh &
Ha, "AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights", ICLR
2021, arXiv:2006.08217, https://github.com/clovaai/AdamP. For such w the gradient is orthogonal to
w, so every plain gradient step grows ||w||, and because only the direction w/||w|| matters the
step that counts is the angular one, roughly ||delta w|| / ||w||. Momentum accelerates the norm
growth and so shrinks the effective step over training; AdamP/SGDP remove the radial component of
the update to prevent this. ``WeightSnapshot`` reports, per parameter,

* ``update_ratio``   ||w_after - w_before|| / ||w_before||,
* ``angular_update`` the angle between w_before and w_after (radians), the step on the sphere,
* ``weight_norm``    ||w_after||, and ``norm_growth`` ||w_after|| / ||w_reference||.

``scale_invariant_parameters`` finds scale-invariant weights numerically: their gradient is
orthogonal to them (d/dc L(c w) at c = 1 is <grad, w> = 0), the criterion AdamP uses (with a
threshold) to decide where to project.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._data import LossFn, frozen_norm_statistics, select_parameters

__all__ = ["gradient_norms", "weight_norms", "WeightSnapshot", "scale_invariant_parameters"]


def gradient_norms(model: nn.Module, params=None) -> dict[str, float]:
    """||p.grad|| per parameter (those with a gradient), from ``.grad`` as left by backward()."""
    named = [(n, p) for n, p in select_parameters(model, params) if p.grad is not None]
    if not named:
        return {}
    norms = torch._foreach_norm([p.grad for _, p in named])
    return dict(zip([n for n, _ in named], torch.stack(norms).tolist()))


def weight_norms(model: nn.Module, params=None) -> dict[str, float]:
    named = select_parameters(model, params)
    norms = torch._foreach_norm([p.detach() for _, p in named])
    return dict(zip([n for n, _ in named], torch.stack(norms).tolist()))


class WeightSnapshot:
    """A copy of the parameters, to measure what one optimizer step (or several) did to them.

    ``reference`` weights (e.g. those at initialisation) give ``norm_growth``; by default the
    snapshot itself is the reference.
    """

    def __init__(self, model: nn.Module, params=None, *, reference: dict[str, float] | None = None):
        named = select_parameters(model, params)
        self.model = model
        self.names = [n for n, _ in named]
        self._params = [p for _, p in named]
        # _foreach_mul returns new tensors: one batched copy of every parameter.
        self.before = torch._foreach_mul([p.detach() for p in self._params], 1.0)
        self.before_norms = torch.stack(torch._foreach_norm(self.before))
        self.reference = reference if reference is not None else dict(zip(self.names, self.before_norms.tolist()))

    def compare(self) -> dict[str, dict[str, float]]:
        after = [p.detach() for p in self._params]
        delta_norms = torch.stack(torch._foreach_norm(torch._foreach_sub(after, self.before)))
        after_norms = torch.stack(torch._foreach_norm(after))
        dots = torch.stack([t.sum() for t in torch._foreach_mul(after, self.before)])
        cosines = (dots / (after_norms * self.before_norms).clamp_min(1e-30)).clamp(-1.0, 1.0)
        out = {}
        for i, name in enumerate(self.names):
            before = float(self.before_norms[i])
            ref = self.reference.get(name, before)
            out[name] = {
                "update_ratio": float(delta_norms[i]) / before if before > 0 else math.inf,
                "angular_update": float(torch.arccos(cosines[i])),
                "weight_norm": float(after_norms[i]),
                "norm_growth": float(after_norms[i]) / ref if ref > 0 else math.inf,
            }
        return out


def scale_invariant_parameters(model: nn.Module, loss_fn: LossFn, batch, *, tol: float = 1e-4, params=None) -> list[str]:
    """Names of parameters whose gradient on ``batch`` is orthogonal to them (|cos| <= ``tol``).

    Scale invariance makes the cosine zero up to rounding; a non-invariant weight can also
    show a small cosine by chance at one point, so check on a representative batch.
    """
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    named = select_parameters(model, params)
    inputs, targets = batch
    with frozen_norm_statistics(model), torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(model(inputs), targets), [p for _, p in named], allow_unused=True)
    found = []
    for (name, p), g in zip(named, grads):
        if g is None or p.ndim < 2:  # biases and gains are not what normalisation makes invariant
            continue
        w = p.detach()
        cos = torch.dot(g.reshape(-1), w.reshape(-1)) / (torch.linalg.vector_norm(g) * torch.linalg.vector_norm(w)).clamp_min(1e-30)
        if abs(float(cos.detach())) <= tol:
            found.append(name)
    return found
