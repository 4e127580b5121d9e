"""LoRA-Pro: adapter gradients whose low-rank update is the closest one to the full gradient.

Wang, Liang, He, Wang, Zhang & Tan, "LoRA-Pro: Are Low-Rank Adapters Properly Optimized?", ICLR 2025,
arXiv:2407.18242; official code https://github.com/mrflogs/LoRA-Pro.

With ``W = W0 + s B A``, adapter gradients ``(gA, gB)`` move the weight along the *equivalent gradient*
``g~ = s (B gA + gB A)``. LoRA-Pro replaces LoRA's gradients (``s B^T g``, ``s g A^T``) by the minimisers
of ``||g~ - g||_F`` (Theorem 2.1), computable from LoRA's own gradients without ``g``:

    gA = (1/s^2) (B^T B)^-1 gA_lora + X A
    gB = (1/s^2) [I - B (B^T B)^-1 B^T] gB_lora (A A^T)^-1 - B X

so ``g~ = P_B g + g P_A - P_B g P_A`` for any r x r ``X``. ``X`` is chosen (Theorem 2.3) to keep the new
gradients closest to LoRA's: ``B^T B X + X A A^T = -(1/s^2) (B^T B)^-1 gA_lora A^T``, a Sylvester equation,
solved here exactly through the eigendecompositions of the two r x r Gram matrices; ``x="zero"`` takes
``X = 0`` instead. Inverses are pseudo-inverses, so ``B = 0`` (LoRA's usual start) gives ``gA = 0`` and
``gB = (1/s^2) gB_lora (A A^T)^-1``, still the closest update.

Deviation: this is the paper's gradient adjustment for plain gradient descent; the adjusted gradients go
to any optimizer (the paper also derives an AdamW variant that keeps full-size moments of ``g~``, not
built here). Same-shape adapters are adjusted together in batched linear algebra.
"""
from __future__ import annotations

from collections import defaultdict

import torch

from .layer import LoRALinear

__all__ = ["lora_pro_"]

XS = ("sylvester", "zero")


def _sylvester(left: torch.Tensor, right: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``X`` with ``left X + X right = rhs`` for batches of symmetric PSD ``left``, ``right``; where an
    eigenvalue sum is 0 the component is 0 (the minimum-norm solution)."""
    lam, p = torch.linalg.eigh(left)
    mu, q = torch.linalg.eigh(right)
    denom = lam.unsqueeze(-1) + mu.unsqueeze(-2)
    tol = denom.abs().amax(dim=(-2, -1), keepdim=True) * denom.shape[-1] * torch.finfo(denom.dtype).eps
    core = p.mT @ rhs @ q
    core = torch.where(denom.abs() > tol, core / denom.where(denom.abs() > tol, torch.ones_like(denom)),
                       torch.zeros_like(core))
    return p @ core @ q.mT


@torch.no_grad()
def lora_pro_(modules, x: str = "sylvester", damping: float = 0.0) -> None:
    """Replace the ``.grad`` of every adapter's ``A`` and ``B`` by LoRA-Pro's (in place); call it after
    ``backward()`` and before ``optimizer.step()``.

    Args:
        modules: a model (every ``LoRALinear`` inside is adjusted) or an iterable of ``LoRALinear``.
        x: ``"sylvester"`` (the paper's ``X``, Theorem 2.3) or ``"zero"`` (``X = 0``); the equivalent
            gradient is the same for both.
        damping: ``>= 0``; the two Gram matrices are inverted as ``(B^T B + damping I)`` and
            ``(A A^T + damping I)`` (0, the default, is the paper's closed form with pseudo-inverses; a positive
            value is a deviation that bounds the adjusted gradients when ``B`` is near 0, see
            docs/seed_methods.md).

    Math: ``g~ = P_B g + g P_A - P_B g P_A``, the closest ``s (B gA + gB A)`` to ``g`` in Frobenius norm.
    Modules whose ``A`` or ``B`` has no gradient are refused before any gradient is changed.

    >>> import torch
    >>> from gradkit.lora import LoRALinear
    >>> torch.manual_seed(0); lora = LoRALinear(torch.nn.Linear(6, 5), rank=2, alpha=2)  # doctest: +ELLIPSIS
    <...>
    >>> with torch.no_grad(): _ = lora.lora_B.normal_()
    >>> lora(torch.randn(8, 6)).square().sum().backward()
    >>> lora_pro_([lora])
    >>> lora.lora_A.grad.shape, lora.lora_B.grad.shape
    (torch.Size([2, 6]), torch.Size([5, 2]))
    """
    if x not in XS:
        raise ValueError(f"x must be one of {XS}, got {x!r}")
    if isinstance(damping, bool) or not isinstance(damping, (int, float)) or not damping >= 0 or damping == float("inf"):
        raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
    if isinstance(modules, torch.nn.Module) and not isinstance(modules, LoRALinear):
        modules = [m for m in modules.modules() if isinstance(m, LoRALinear)]
    modules = [modules] if isinstance(modules, LoRALinear) else list(modules)
    for m in modules:
        if not isinstance(m, LoRALinear):
            raise TypeError(f"modules must hold LoRALinear modules, got {type(m).__name__}")
        if m.lora_A.grad is None or m.lora_B.grad is None:
            raise ValueError(f"every adapter needs gradients in A and B before lora_pro_; {m} has none "
                             "(run backward first)")
    groups = defaultdict(list)
    for m in modules:
        groups[(m.lora_A.shape, m.lora_B.shape, m.scaling, m.lora_A.dtype, m.lora_A.device)].append(m)
    for (_, _, s, dtype, _), ms in groups.items():
        work = torch.float64 if dtype == torch.float64 else torch.float32
        a = torch.stack([m.lora_A for m in ms]).to(work)
        b = torch.stack([m.lora_B for m in ms]).to(work)
        ga = torch.stack([m.lora_A.grad for m in ms]).to(work)
        gb = torch.stack([m.lora_B.grad for m in ms]).to(work)
        btb, aat = b.mT @ b, a @ a.mT
        if damping:
            eye = torch.eye(btb.shape[-1], dtype=work, device=btb.device)
            btb, aat = btb + damping * eye, aat + damping * eye
        btb_inv = torch.linalg.pinv(btb, hermitian=True)
        aat_inv = torch.linalg.pinv(aat, hermitian=True)
        inv_s2 = 1.0 / (s * s)
        new_a = inv_s2 * (btb_inv @ ga)
        new_b = inv_s2 * ((gb - b @ (btb_inv @ (b.mT @ gb))) @ aat_inv)
        if x == "sylvester":
            big_x = _sylvester(btb, aat, -inv_s2 * (btb_inv @ ga @ a.mT))
            new_a = new_a + big_x @ a
            new_b = new_b - b @ big_x
        for i, m in enumerate(ms):
            m.lora_A.grad.copy_(new_a[i])
            m.lora_B.grad.copy_(new_b[i])
