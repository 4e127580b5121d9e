"""⊥Grad: remove from each update its component along the weights (no naive loss minimisation).

Prieto, Barsbey, Mediano & Birdal, "Grokking at the Edge of Numerical Stability", ICLR 2025,
arXiv:2501.04697; official code https://github.com/LucasPrietoAl/grokking-at-the-edge-of-numerical-stability.

Past the point of overfitting, the gradient aligns with the direction that only scales the weights
(and so the logits) up, which lowers the loss without changing any prediction and drives the softmax
towards floating-point collapse. ⊥Grad keeps only the part of the gradient orthogonal to the weights,
per tensor (the whole tensor flattened to one vector)::

    g_perp = g - (<g, w> / <w, w>) w

The paper defines ⊥Grad as this projection alone (``renormalize=False``, the default). The official
code's ``OrthoGrad`` optimizer wrapper additionally rescales ``g_perp`` to the norm of ``g`` (and adds
``1e-30`` to both denominators); ``renormalize=True`` does that. Put it first in a chain, before the
moments, as the paper does with Adam (``chain(orthogonal_grad(), scale_by_adam(), ...)``,
:class:`gradkit.optim.PerpAdamW`).

A tensor of one element has no orthogonal complement: its update is exactly zero (computed, the
projection would leave rounding noise, which ``renormalize`` would blow up to the gradient's norm).

Cost: one dot product and one norm per tensor. Tensors of the same size are stacked (in chunks of
bounded size) so that one batched reduction serves them all; large tensors are reduced through views
without copies.
"""
from __future__ import annotations


import torch
from torch import Tensor

from gradkit.core.hyper import resolve
from gradkit.core.state import PER_TENSOR
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean, positive
from gradkit.transforms._stacking import chunks, flat_view, stack

__all__ = ["orthogonal_grad", "OrthogonalGrad"]


@register_transform(
    "orthogonal_grad",
    summary="remove from each update its component along the weights (⊥Grad), optionally keeping its norm",
    reference="Prieto, Barsbey, Mediano & Birdal, Grokking at the Edge of Numerical Stability, ICLR 2025, "
              "arXiv:2501.04697; https://github.com/LucasPrietoAl/grokking-at-the-edge-of-numerical-stability",
)
class OrthogonalGrad(GradientTransform):
    """Project each tensor's update onto the orthogonal complement of its weight.

    Args:
        renormalize: rescale the projected update to the norm of the input update (the official
            ``OrthoGrad``); ``False`` is the paper's equation.
        eps: added to ``<w, w>`` and to the norm of the projection, as the official code's ``1e-30``.

    ``u <- u - (<u, w> / (<w, w> + eps)) w`` per tensor, then ``u <- u * ||u_in|| / (||u|| + eps)`` if
    ``renormalize``. Reference: Prieto et al., ICLR 2025, arXiv:2501.04697.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.orthogonal_grad(), gradkit.scale(-1.0)))
    >>> w.grad = torch.tensor([3.0, 4.0]) + torch.tensor([-4.0, 3.0])  # radial + tangent
    >>> opt.step(); w.detach()
    tensor([7., 1.])
    """

    name = "orthogonal_grad"
    kind = PER_TENSOR
    owner_steppable = True  # the projection on the weights is per tensor: sharded params step on owner ranks (core/redistribute.py)
    fusable = True

    def __init__(self, renormalize=False, eps=1e-30):
        self.renormalize = renormalize
        self.eps = eps

    def validate(self, group):
        boolean(self.renormalize, group, "renormalize")
        positive(self.eps, group, "eps")

    def scalars(self, group, step):
        return {"eps": float(resolve(self.eps, group))}

    def update(self, updates, state, params, ctx):
        eps = ctx.scalars(self)["eps"]
        renormalize = bool(ctx.value(self.renormalize))
        if ctx.traced:
            # per tensor plain math, traced into one program
            return ctx.fresh([_project_one(u, p, eps, renormalize) for u, p in zip(updates, params)])
        updates = ctx.writable(updates)
        _project_stacked(updates, params, eps, renormalize)
        return updates

    def __repr__(self):
        return f"OrthogonalGrad(renormalize={self.renormalize!r}, eps={self.eps!r})"


def _project_one(u: Tensor, w: Tensor, eps, renormalize: bool) -> Tensor:
    if u.numel() == 1:
        return torch.zeros_like(u)
    uf, wf = u.reshape(-1), w.reshape(-1).to(u.dtype)
    out = u - (torch.dot(uf, wf) / (torch.dot(wf, wf) + eps)) * wf.view_as(u)
    if renormalize:
        out = out * (torch.linalg.vector_norm(uf) / (torch.linalg.vector_norm(out) + eps))
    return out


def _project_stacked(updates: list[Tensor], params: list[Tensor], eps: float, renormalize: bool) -> None:
    """In place: the projection of every update, one batched reduction per chunk of equal-sized tensors
    (the stacking policy of :mod:`gradkit.transforms._stacking`, each tensor as one row)."""
    nonempty = [i for i, p in enumerate(params) if p.numel() > 0]
    for idx, _, size in chunks(params, nonempty, view=flat_view):
        if size == 1:
            torch._foreach_zero_([updates[i] for i in idx])
            continue
        u = stack([updates[i] for i in idx], 1, size)[:, 0]
        w = stack([params[i] for i in idx], 1, size)[:, 0].to(u.dtype)
        # einsum reduces without materialising u * w
        coef = torch.einsum("kn,kn->k", u, w) / (torch.einsum("kn,kn->k", w, w) + eps)
        if renormalize:
            norm_in = torch.linalg.vector_norm(u, dim=-1)
        u.sub_(w * coef.unsqueeze(-1))
        if renormalize:
            u.mul_((norm_in / (torch.linalg.vector_norm(u, dim=-1) + eps)).unsqueeze(-1))
        if len(idx) > 1 or u.data_ptr() != updates[idx[0]].data_ptr():
            torch._foreach_copy_([updates[i] for i in idx], [x.view_as(updates[i]) for x, i in zip(u.unbind(0), idx)])


orthogonal_grad = OrthogonalGrad
