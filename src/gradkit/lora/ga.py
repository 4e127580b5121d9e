"""LoRA-GA: initialise the adapters from the full gradient so the first steps follow full fine-tuning.

Wang, Yu & Li, "LoRA-GA: Low-Rank Adaptation with Gradient Approximation", NeurIPS 2024,
arXiv:2407.05000; official code https://github.com/Outsider565/LoRA-GA.

With ``W = W0 + s B A`` and plain gradient descent, one step of the adapters changes the weight by
``-lr s^2 (G A^T A + B B^T G)`` (G the full gradient of the loss in W). With the SVD ``G = U S V^T``,

    A = c V[:, :r]^T,   B = c U[:, r:2r],   c = d_out^(1/4) / sqrt(gamma)

makes that change ``-lr s^2 c^2`` times the best rank-2r approximation of ``G`` (``U_1 S_1 V_1^T +
U_2 S_2 V_2^T``): the first LoRA step is a scaled step of full fine-tuning projected onto the gradient's top
2r directions. The frozen weight becomes ``W0 - s B A``, so the model computes exactly what it did before.
``c`` is the paper's "stable" scale (its Algorithm 1; ``gamma`` a hyperparameter, 16 by default here).

``G`` is the average over the given batches of the loss's gradient in each adapted layer's weight (the
paper samples a few batches, as here). Deviation: the gradient is taken for all batches at once in float32
(float64 for float64 weights; the paper's code accumulates layer by layer to save memory on large models).
"""
from __future__ import annotations

import math

import torch

from .layer import LoRALinear, lora_modules

__all__ = ["lora_ga_init", "estimate_weight_gradients"]


def estimate_weight_gradients(model, loss_fn, batches, modules=None) -> list[torch.Tensor]:
    """The gradient of ``loss_fn(model, batch)`` in each adapted layer's effective weight, averaged over
    ``batches``; nothing else is written (no ``.grad``, the base weights stay frozen).

    >>> import torch
    >>> from gradkit.lora import apply_lora, lora_modules
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4)); _ = apply_lora(net, rank=1)
    >>> x = torch.randn(5, 3)
    >>> g, = estimate_weight_gradients(net, lambda m, b: m(b).sum(), [x])
    >>> torch.allclose(g, torch.ones(4, 1) * x.sum(0))
    True
    """
    modules = lora_modules(model) if modules is None else list(modules)
    if not modules:
        raise ValueError("the model has no LoRALinear module; call gradkit.lora.apply_lora first")
    batches = list(batches)
    if not batches:
        raise ValueError("batches must hold at least one batch")
    weights = [m.base.weight for m in modules]
    flags = [w.requires_grad for w in weights]
    totals = [torch.zeros_like(w, dtype=torch.promote_types(w.dtype, torch.float32)) for w in weights]
    try:
        for w in weights:
            w.requires_grad_(True)
        for batch in batches:
            loss = loss_fn(model, batch)
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
            for total, g in zip(totals, grads):
                if g is not None:
                    total.add_(g.to(total.dtype))
    finally:
        for w, f in zip(weights, flags):
            w.requires_grad_(f)
    return [t.div_(len(batches)) for t in totals]


def lora_ga_init(model, loss_fn, batches, gamma: float = 16.0) -> list[torch.Tensor]:
    """Set every ``LoRALinear`` of ``model`` to LoRA-GA's initialisation (in place).

    Args:
        model: holds ``LoRALinear`` modules (``gradkit.lora.apply_lora``), none merged; each needs
            ``2 * rank <= min(in_features, out_features)``.
        loss_fn: ``loss_fn(model, batch) -> scalar loss``.
        batches: the few batches the gradient is estimated on.
        gamma: the stable-scale hyperparameter (positive): ``A, B`` are scaled by ``d_out^(1/4)/sqrt(gamma)``.

    Math: ``G = U S V^T``; ``A = c V[:, :r]^T``, ``B = c U[:, r:2r]``, ``W0 <- W0 - s B A``.
    Returns the estimated gradients (one per adapted layer). The model's outputs are unchanged (up to
    float rounding).

    >>> import torch
    >>> from gradkit.lora import apply_lora
    >>> torch.manual_seed(0); net = torch.nn.Sequential(torch.nn.Linear(8, 8))  # doctest: +ELLIPSIS
    <...>
    >>> _ = apply_lora(net, rank=2); x = torch.randn(16, 8); before = net(x)
    >>> _ = lora_ga_init(net, lambda m, b: m(b).pow(2).mean(), [x])
    >>> torch.allclose(net(x), before, atol=1e-5), net[0].lora_B.abs().sum() > 0
    (True, tensor(True))
    """
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0 or math.isinf(gamma):
        raise ValueError(f"gamma must be a positive finite number, got {gamma!r}")
    modules = lora_modules(model)
    if not modules:
        raise ValueError("the model has no LoRALinear module; call gradkit.lora.apply_lora first")
    for m in modules:
        if m.merged:
            raise ValueError("every LoRALinear must be unmerged for lora_ga_init; call unmerge() first")
        if 2 * m.rank > min(m.in_features, m.out_features):
            raise ValueError(f"LoRA-GA needs 2 * rank <= min(in, out) features; got rank {m.rank} for a "
                             f"{m.out_features}x{m.in_features} layer")
    grads = estimate_weight_gradients(model, loss_fn, batches, modules)
    with torch.no_grad():
        for m, g in zip(modules, grads):
            u, _, vh = torch.linalg.svd(g, full_matrices=False)
            r, c = m.rank, m.out_features ** 0.25 / math.sqrt(gamma)
            m.base.weight.add_(m.delta())  # the adapters' current product goes back into W0 first
            m.lora_A.copy_(c * vh[:r])
            m.lora_B.copy_(c * u[:, r:2 * r])
            m.base.weight.sub_(m.delta())
    return grads
