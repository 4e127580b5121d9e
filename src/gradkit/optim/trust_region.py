"""Momentum with a non-Euclidean trust-region step: spectral (Muon), l-inf (Signum) or l2 norm.

Kovalev, "Understanding Gradient Orthogonalization for Deep Learning via Non-Euclidean Trust-Region
Optimization", arXiv:2503.12645 (2025). Newton-Schulz orthogonalization and shape scaling as Muon's
official code, https://github.com/KellerJordan/Muon.

    g <- -g if maximize
    u <- unit trust-region step along the (Nesterov) momentum in ``norm``   (scale_by_trust_region)
    p <- p * (1 - lr * wd) - lr * u                                         (decoupled decay)

Every parameter takes the same kind of step; use :class:`gradkit.optim.Muon` to give vectors,
embeddings and heads AdamW instead.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.orthogonalization import MUON_COEFFICIENTS
from gradkit.transforms.trust_region import scale_by_trust_region

__all__ = ["TrustRegionMomentum", "trust_region_transform"]


def trust_region_transform():
    """``scale_by_trust_region`` reading every argument from the param group (``norm``, ``momentum``,
    ``nesterov``, ``ns_steps``, ``ns_coefficients``, ``ns_dtype``, ``shape_scale``), for recipes whose
    groups differ in them.

    Example:
        >>> trust_region_transform().name
        'trust_region'
    """
    return scale_by_trust_region(hp("norm"), hp("momentum"), hp("nesterov"), hp("ns_steps"), hp("ns_coefficients"),
                                 hp("ns_dtype"), hp("shape_scale"))


@register_optimizer("trust_region_momentum",
                    summary="momentum with a unit trust-region step in the spectral (Muon), l-inf (sign) or l2 norm",
                    reference="Kovalev, Understanding Gradient Orthogonalization for Deep Learning via Non-Euclidean "
                              "Trust-Region Optimization, arXiv:2503.12645; https://github.com/KellerJordan/Muon")
class TrustRegionMomentum(Optimizer):
    """Non-Euclidean trust-region momentum on every parameter: ``m <- momentum m + (1 - momentum) g``,
    ``p <- p (1 - lr wd) - lr * argmax_{|u| <= 1} <m, u>`` in the chosen norm (spectral: the orthogonalized
    momentum, Muon's rule; l-inf: ``sign(m)``; l2: ``m / |m|_2``).

    Args:
        lr: trust-region radius: the norm of each step (before the spectral shape factor).
        norm: ``"spectral"`` (default; vectors are treated as 1 x n matrices), ``"linf"`` or ``"l2"``.
        momentum, nesterov: Muon's momentum (``m.lerp_(g, 1 - momentum)``; Nesterov by default).
        weight_decay: decoupled (``p *= 1 - lr * wd``).
        ns_steps, ns_coefficients, ns_dtype: the Newton-Schulz iteration (5 steps, Muon's quintic
            coefficients; ``ns_dtype="auto"`` iterates in bfloat16 on CUDA devices with native bf16, as the
            official code does, and in float32 elsewhere (CPUs: see ``transforms.orthogonalization``);
            ``None``: the param dtype).
        shape_scale: ``"muon"`` (default), ``"moonlight"`` or ``"none"``; see ``scale_by_trust_region``.
        maximize: maximize the objective.
        nonfinite, state_dtype: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = gradkit.optim.TrustRegionMomentum([w], lr=0.1, norm="linf")
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.detach()
        tensor([ 0.9000, -1.9000])
    """

    def __init__(self, params, lr=0.02, norm="spectral", momentum=0.95, nesterov=True, weight_decay=0.0, *,
                 ns_steps=5, ns_coefficients=MUON_COEFFICIENTS, ns_dtype="auto", shape_scale="muon",
                 maximize=False, nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, norm=norm, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        ns_steps=ns_steps, ns_coefficients=ns_coefficients, ns_dtype=ns_dtype,
                        shape_scale=shape_scale, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            trust_region_transform(),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
