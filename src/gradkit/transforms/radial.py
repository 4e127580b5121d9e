"""Projection of updates onto the tangent space of scale-invariant weights (AdamP / SGDP).

Heo, Chun, Oh, Han, Yun, Kim, Uh & Ha, "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
Scale-invariant Weights", ICLR 2021, arXiv:2006.08217; official code https://github.com/clovaai/AdamP
(package ``adamp``).

A weight followed by a normalisation layer is scale-invariant: its gradient is orthogonal to it, and
any radial component of the update only grows its norm, which shrinks the effective step size. For a
weight ``w`` with ``dim >= 2`` and gradient ``g`` the views are tried in order, channel (one row per
output channel, ``w.view(w.shape[0], -1)``) then layer (``w.view(1, -1)``)::

    if max_rows |cos(g_row, w_row)| < delta / sqrt(row_size):        # the view looks scale-invariant
        w_hat_row = w_row / (||w_row|| + eps)
        u_row    <- u_row - <w_hat_row, u_row> w_hat_row               # remove the radial component
        decay(w) <- wd_ratio * decay(w)

``cos`` is measured between the *gradient* and the weight (not the update), as in the paper and the
official code; the projection is applied to the update that the wrapped transform produces. Used as
``project_radial(inner)`` the cosines are taken on the input of ``inner`` (the gradient when it comes
first in the chain) and the output of ``inner`` is projected; used without ``inner`` the input
updates are both measured and projected.

The weight decay of the official optimizers is part of the idea (the ratio depends on the
projection), so it is an argument here: ``weight_decay`` adds ``wd * ratio / (1 - decay_momentum) *
params`` to the update (decoupled; with ``scale_by_learning_rate`` after it, ``p *= 1 - lr * wd *
ratio / (1 - decay_momentum)`` as in the official code; SGDP passes its momentum as
``decay_momentum``).

Cost: the cosines need per-row reductions; small tensors of the same view shape are stacked (in
chunks) and reduced together, large ones through views without copies, and which tensors are
projected is read on the host once per step (one sync).

Prefer the ``weight_decay`` argument to a decay inside ``inner``: it applies ``wd_ratio``. A decay
inside ``inner`` that stays pending (``add_decayed_weights`` last in ``inner``) is not projected; one
that a later transform of ``inner`` folds into the update is purely radial and is projected away.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from gradkit.core.hyper import resolve
from gradkit.core.ops import ScalarList, at
from gradkit.core.state import PER_TENSOR
from gradkit.core.transform import GradientTransform, as_inner, init_inner, update_inner
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean, non_negative, positive, unit_interval
from gradkit.transforms._stacking import chunks, rows_view, stack

__all__ = ["project_radial", "ProjectRadial", "radial_modes", "NOT_PROJECTED", "CHANNEL", "LAYER"]

NOT_PROJECTED, CHANNEL, LAYER = 0, 1, 2
@register_transform(
    "project_radial",
    summary="remove the radial component of updates of scale-invariant weights (AdamP/SGDP), wrapping any transform",
    reference="Heo et al., AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights, "
              "ICLR 2021, arXiv:2006.08217; https://github.com/clovaai/AdamP",
)
class ProjectRadial(GradientTransform):
    """Wraps ``inner`` (any transform or chain; ``None`` projects the input updates themselves).

    Args:
        inner: the transform whose output is projected; its state lives under this transform's namespace.
        delta: cosine threshold; a view is projected when every row's |cos| is below ``delta / sqrt(row_size)``.
        wd_ratio: factor on the weight decay of projected weights.
        eps: added to norms (and the lower bound of the cosine's norms), as the official ``eps``.
        weight_decay: decoupled weight decay, scaled by ``wd_ratio`` where projected.
        decay_momentum: the decay is divided by ``1 - decay_momentum`` (SGDP's convention).
        project_state: when ``inner`` returns its own state buffers (plain momentum), write the projection
            into them, so the projected momentum carries over to the next step. The official SGDP does
            this (its in-place projection acts on the momentum buffer when ``nesterov=False``); the paper's
            algorithm keeps the buffer unprojected (``False``).

    ``u_row <- u_row - <w_hat_row, u_row> w_hat_row`` where the view passes the scale-invariance test (see the
    module docstring). Reference: Heo et al., ICLR 2021, arXiv:2006.08217; https://github.com/clovaai/AdamP.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.project_radial(), gradkit.scale(-1.0)))
    >>> w.grad = torch.tensor([[-4.0, 3.0]]) * 0.1 + torch.tensor([[3.0, 4.0]]) * 1e-4  # almost tangent
    >>> opt.step(); round(float((w.detach() - torch.tensor([[3.0, 4.0]])) @ torch.tensor([3.0, 4.0])), 4)
    0.0
    """

    name = "radial"
    kind = PER_TENSOR
    shard_aware = True  # on local shards, the whole-tensor sums are completed over the mesh (ctx.shards)
    # Written twice on purpose: the unfused step batches the cosine test over stacked tensors and reads
    # which tensors are projected on the host once (one sync, then work only on those); the fused step
    # selects with torch.where per tensor, which the compiler fuses and which never syncs. (Fusable
    # when the inner transform is.)

    def __init__(self, inner: GradientTransform | None = None, delta=0.1, wd_ratio=0.1, eps=1e-8, weight_decay=0.0,
                 decay_momentum=0.0, project_state=False):
        self.inner = None if inner is None else as_inner(inner)
        self.delta = delta
        self.wd_ratio = wd_ratio
        self.eps = eps
        self.weight_decay = weight_decay
        self.decay_momentum = decay_momentum
        self.project_state = project_state

    @property
    def fusable(self) -> bool:  # type: ignore[override]
        return self.inner is None or self.inner.fusable

    def children(self):
        return {} if self.inner is None else {"inner": self.inner}

    def validate(self, group):
        if self.inner is not None:
            self.inner.validate(group)
        non_negative(self.delta, group, "delta")
        unit_interval(self.wd_ratio, group, "wd_ratio", closed_right=True)
        positive(self.eps, group, "eps")
        non_negative(self.weight_decay, group, "weight_decay")
        unit_interval(self.decay_momentum, group, "momentum")
        boolean(self.project_state, group, "project_state")

    def init(self, params, ctx):
        return {} if self.inner is None else init_inner("inner", self.inner, params, ctx)

    def scalars(self, group, step):
        out = {"delta": float(resolve(self.delta, group)), "eps": float(resolve(self.eps, group)),
               "decay": float(resolve(self.weight_decay, group)) / (1.0 - float(resolve(self.decay_momentum, group))),
               "wd_ratio": float(resolve(self.wd_ratio, group))}
        if self.inner is not None:
            out["inner"] = self.inner.scalars(group, step)
        return out

    def _inner(self, updates, state, params, ctx):
        # Whatever ``inner`` leaves pending (scale, decay * params, a denominator) stays pending: the
        # projection is linear and acts on the update part only, so a pending decay is not projected.
        return updates if self.inner is None else update_inner("inner", self.inner, updates, state, params, ctx)

    def update(self, updates, state, params, ctx):
        if ctx.traced:
            return self._traced_update(updates, state, params, ctx)
        s = ctx.scalars(self)
        eps = s["eps"]
        modes = radial_modes(updates, params, s["delta"], eps, ctx.shards)
        updates = self._inner(updates, state, params, ctx)
        hits = [i for i, m in enumerate(modes) if m != NOT_PROJECTED]
        if hits and ctx.denominator is not None:
            # A pending quotient n / d (Adam-like inner) is projected through new numerators of the
            # projected tensors only, and the optimizer still applies everything with one addcdiv.
            updates = _project_quotient(updates, ctx.denominator, params, hits, modes, eps, ctx.shards)
        elif hits:
            state_ids = {id(t) for values in state.values() for t in values if t is not None}
            in_place = (not ctx.owned and ctx.value(self.project_state)
                        and all(id(updates[i]) in state_ids for i in hits))
            if in_place:
                _project(updates, params, hits, modes, eps, ctx.shards)
                updates = ctx.borrowed(updates)  # still the state buffers
            else:
                updates = ctx.writable(updates)
                _project(updates, params, hits, modes, eps, ctx.shards)
        if s["decay"] != 0.0:
            ctx.add_decay([s["decay"] * (s["wd_ratio"] if m != NOT_PROJECTED else 1.0) for m in modes])
        return updates

    def _traced_update(self, updates, state, params, ctx):
        """Per tensor: the scale-invariance test on the input, ``inner``, then the projection, selected
        with ``torch.where`` on the device (no host sync)."""
        s = ctx.scalars(self)
        n = len(updates)
        delta, eps, decay, wd_ratio = ([at(s[k], i) for i in range(n)] for k in ("delta", "eps", "decay", "wd_ratio"))
        projected = [_fused_projected(u, p, d, e) for u, p, d, e in zip(updates, params, delta, eps)]
        updates = ctx.evaluate_quotient(self._inner(updates, state, params, ctx))
        project_state = ctx.value(self.project_state)
        buffers = [t for values in state.values() for t in values if t is not None]
        out, decays = [], ScalarList()
        for i, (u, p, (channel, layer, w_norms)) in enumerate(zip(updates, params, projected)):
            if channel is None:
                out.append(u)
                decays.append(decay[i])
                continue
            hit = channel | layer
            # u - w_hat <w_hat, u> with w_hat = w / n is u - w <w, u> / n^2: one reduction over (w, u) and
            # one elementwise pass, with the row norms of w kept from the test
            w = p.reshape(rows_view(p.shape))
            u2 = u.reshape(w.shape)
            wu = (w * u2).sum(-1, keepdim=True)
            norm = torch.where(channel, w_norms.unsqueeze(-1), _total_norm(w_norms)) + eps[i]
            coef = torch.where(hit, torch.where(channel, wu, wu.sum()) / (norm * norm), 0.0)
            new = (u2 - w * coef).view_as(u)
            if project_state and any(u is b for b in buffers):
                u.copy_(new)  # the official SGDP projects its momentum buffer in place
            out.append(new)
            decays.append(decay[i] * torch.where(hit, wd_ratio[i], 1.0))
        ctx.add_decay(decays)
        return ctx.borrowed(out)  # some may be the input itself; a later writer copies (free once compiled)

    def __repr__(self):
        return (f"ProjectRadial(inner={self.inner!r}, delta={self.delta!r}, wd_ratio={self.wd_ratio!r}, eps={self.eps!r}, "
                f"weight_decay={self.weight_decay!r}, decay_momentum={self.decay_momentum!r}, "
                f"project_state={self.project_state!r})")


def _fused_projected(grad: Tensor, param: Tensor, delta: Tensor, eps: Tensor):
    """The fused form of :func:`radial_modes` for one tensor: 0-dim bool tensors (channel, layer) and the
    row norms of the weight, or ``None`` three times for tensors that are never projected."""
    if param.dim() < 2 or param.numel() == 0:
        return None, None, None
    rows, cols = rows_view(param.shape)
    g, w = grad.reshape(rows, cols), param.reshape(rows, cols)
    gw = (g * w).sum(-1)
    g_norm, w_norm = torch.linalg.vector_norm(g, dim=-1), torch.linalg.vector_norm(w, dim=-1)
    cos_rows = gw.abs() / (g_norm.clamp_min(eps) * w_norm.clamp_min(eps))
    cos_layer = gw.sum().abs() / (_total_norm(g_norm).clamp_min(eps) * _total_norm(w_norm).clamp_min(eps))
    channel = cos_rows.amax() < delta / math.sqrt(cols)
    layer = ~channel & (cos_layer < delta / math.sqrt(rows * cols))
    return channel, layer, w_norm


def _row_dot(a: Tensor, b: Tensor) -> Tensor:
    # einsum reduces without materialising a * b (linalg.vecdot does on CPU)
    return torch.einsum("krc,krc->kr", a, b)


def _total_norm(row_norms: Tensor) -> Tensor:
    return torch.linalg.vector_norm(row_norms, dim=-1)


def radial_modes(grads: list[Tensor], params: list[Tensor], delta: float, eps: float, shards=None) -> list[int]:
    """For each tensor: ``CHANNEL`` or ``LAYER`` if that view passes the scale-invariance test, else
    ``NOT_PROJECTED`` (always for tensors with fewer than 2 dims). One host sync.

    With ``shards`` (:class:`~gradkit.core.sharding.Shards`) the tensors are local shards of whole rows:
    the row cosines are local, and one all-reduce completes, per tensor, the count of rows that fail the
    channel test and the sums the layer cosine needs (``<g, w>``, ``||g||^2``, ``||w||^2``).

    >>> w = torch.tensor([[3.0, 4.0]])
    >>> radial_modes([torch.tensor([[-4.0, 3.0]]), torch.ones(2)], [w, torch.ones(2)], 0.1, 1e-8) == [CHANNEL, NOT_PROJECTED]
    True
    """
    modes = [NOT_PROJECTED] * len(params)
    shapes = [p.shape for p in params] if shards is None else shards.shapes
    eligible = [i for i, p in enumerate(params) if len(shapes[i]) > 1 and shapes[i].numel() > 0]
    if not eligible:
        return modes
    order, flags, partials, layer_bounds = [], [], [], []
    for idx, rows, cols in chunks(params, eligible, shapes=None if shards is None else shards.shapes):
        g = stack([grads[i] for i in idx], rows, cols)
        w = stack([params[i] for i in idx], rows, cols)
        gw = _row_dot(g, w)
        g_norm, w_norm = torch.linalg.vector_norm(g, dim=-1), torch.linalg.vector_norm(w, dim=-1)
        cos_rows = gw.abs() / (g_norm.clamp_min(eps) * w_norm.clamp_min(eps))
        order.extend(idx)
        if shards is not None:
            failing = (~(cos_rows < delta / math.sqrt(cols))).sum(-1).to(gw.dtype)  # nan fails, as in amax
            partials.append(torch.stack([failing, gw.sum(-1), g_norm.square().sum(-1), w_norm.square().sum(-1)]))
            layer_bounds.extend(delta / math.sqrt(shapes[i].numel()) for i in idx)
            continue
        cos_layer = gw.sum(-1).abs() / (_total_norm(g_norm).clamp_min(eps) * _total_norm(w_norm).clamp_min(eps))
        channel = cos_rows.amax(-1) < delta / math.sqrt(cols)
        layer = cos_layer < delta / math.sqrt(rows * cols)
        flags.append(torch.where(channel, CHANNEL, torch.where(layer, LAYER, NOT_PROJECTED)))
    if shards is not None:
        failing, gw, g_sq, w_sq = shards.sum(torch.cat(partials, dim=-1), order)
        cos_layer = gw.abs() / (g_sq.sqrt().clamp_min(eps) * w_sq.sqrt().clamp_min(eps))
        layer = cos_layer < torch.tensor(layer_bounds, dtype=cos_layer.dtype, device=cos_layer.device)
        flags = [torch.where(failing == 0, CHANNEL, torch.where(layer, LAYER, NOT_PROJECTED))]
    device = flags[0].device
    if device.type == "meta":  # shapes without values (memory estimates, deferred init): nothing to test
        return modes
    for i, m in zip(order, torch.cat([f.to(device) for f in flags]).tolist()):
        modes[i] = int(m)
    return modes


def _unit_weights(w: Tensor, channel: Tensor, eps: float, complete=None) -> Tensor:
    """w / (||w_row|| + eps) for channel-mode tensors, w / (||w|| + eps) for layer-mode ones
    (``complete``: sums one number per stacked tensor over the shards)."""
    row_norms = torch.linalg.vector_norm(w, dim=-1)
    if complete is None:
        total = _total_norm(row_norms)
    else:
        total = complete(row_norms.square().sum(-1)).sqrt()
    norms = torch.where(channel, row_norms, total.unsqueeze(-1))
    return w / (norms + eps).unsqueeze(-1)


def _radial_coefficients(w_hat: Tensor, u: Tensor, channel: Tensor, complete=None) -> Tensor:
    """<w_hat, u> per row (channel mode) or over the whole tensor (layer mode), shaped (k, rows, 1)."""
    coef = _row_dot(w_hat, u)
    total = coef.sum(-1) if complete is None else complete(coef.sum(-1))
    return torch.where(channel, coef, total.unsqueeze(-1)).unsqueeze(-1)


def _channel_flags(modes: list[int], idx: list[int], device) -> Tensor:
    return torch.tensor([modes[i] == CHANNEL for i in idx], device=device)[:, None]


def _completer(shards, idx: list[int]):
    return None if shards is None else (lambda partials: shards.sum(partials, idx))


def _project(updates: list[Tensor], params: list[Tensor], hits: list[int], modes: list[int], eps: float,
             shards=None) -> None:
    """In place: remove from each hit update its component along the weight, per channel or per layer.
    On local shards, two all-reduces per chunk complete the layer-mode norm and coefficient."""
    for idx, rows, cols in chunks(params, hits, shapes=None if shards is None else shards.shapes):
        w = stack([params[i] for i in idx], rows, cols)
        u = stack([updates[i] for i in idx], rows, cols)
        channel = _channel_flags(modes, idx, w.device)
        w_hat = _unit_weights(w, channel, eps, _completer(shards, idx))
        u.sub_(w_hat * _radial_coefficients(w_hat, u, channel, _completer(shards, idx)))
        if len(idx) > 1 or u.data_ptr() != updates[idx[0]].data_ptr():
            torch._foreach_copy_([updates[i] for i in idx], [x.view_as(updates[i]) for x, i in zip(u.unbind(0), idx)])


def _project_quotient(numerators: list[Tensor], denominators: list[Tensor], params: list[Tensor], hits: list[int],
                      modes: list[int], eps: float, shards=None) -> list[Tensor]:
    """Numerators n' with n' / d = proj(n / d) for the hit tensors (new tensors; the others are kept)."""
    out = list(numerators)
    for idx, rows, cols in chunks(params, hits, shapes=None if shards is None else shards.shapes):
        w = stack([params[i] for i in idx], rows, cols)
        n = stack([numerators[i] for i in idx], rows, cols)
        d = stack([denominators[i] for i in idx], rows, cols)
        channel = _channel_flags(modes, idx, w.device)
        w_hat = _unit_weights(w, channel, eps, _completer(shards, idx))
        projected = n - w_hat * _radial_coefficients(w_hat, n / d, channel, _completer(shards, idx)) * d
        for x, i in zip(projected.unbind(0), idx):
            out[i] = x.view_as(numerators[i])
    return out


project_radial = ProjectRadial
