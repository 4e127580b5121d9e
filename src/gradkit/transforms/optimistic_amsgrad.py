"""Optimistic AMSGrad: AMSGrad plus a second half-step along a prediction of the next gradient.

Wang, Li, Chen & Li, "An Optimistic Acceleration of AMSGrad for Nonconvex Optimization", ACML 2021,
arXiv:1903.01435 (Algorithm 2, OPT-AMSGRAD; the gradient prediction is their Algorithm 3, RMPE, after
Scieur et al.'s regularized nonlinear acceleration). No official code is published with the paper.

The algorithm keeps two sequences, ``w_{t+1/2}`` (the AMSGrad iterate) and ``w_{t+1}`` (where the next
gradient is taken)::

    theta_t = b1 theta_{t-1} + (1 - b1) g_t        v_t = b2 v_{t-1} + (1 - b2) g_t^2     (v_0 = eps)
    vhat_t  = max(vhat_{t-1}, v_t)
    w_{t+1/2} = w_{t-1/2} - lr theta_t / sqrt(vhat_t)
    w_{t+1}   = w_{t+1/2} - lr h_{t+1} / sqrt(vhat_t),    h_{t+1} = b1 theta_{t-1} + (1 - b1) m_{t+1}

with ``m_{t+1}`` the guess of ``g_{t+1}``. Only ``w`` is stored: subtracting the two lines gives the
step from ``w_t`` to ``w_{t+1}``::

    u_t = theta_t / sqrt(vhat_t) + d_{t+1} - d_t,     d_{t+1} = h_{t+1} / sqrt(vhat_t),  d_1 = 0

(``d`` is the optimistic displacement of the current point from the AMSGrad iterate), applied as
``w <- w - lr u_t`` by ``scale_by_learning_rate``.

The prediction (RMPE) extrapolates the ``r + 1`` most recent gradients ``x_0, ..., x_r`` (oldest
first) of the whole param group, flattened to one vector::

    U = [x_1 - x_0, ..., x_r - x_{r-1}],   (U^T U / ||U^T U||_2 + lam I) z = 1,   c = z / sum(z)
    m_{t+1} = sum_{i<r} c_i x_i

``predictor="last"`` uses ``m_{t+1} = g_t`` instead (the usual optimistic guess).

Deviations, stated: the second half-step is scaled by the current learning rate, not the next one (equal
under a constant learning rate); ``U^T U`` is normalised by its largest eigenvalue before ``lam`` is
added, so that ``lam`` does not depend on the scale of the gradients (``z`` is rescaled by ``c`` anyway);
until ``r + 1`` gradients have been seen, and in a group whose tensors are at different steps for the
tensors that lack them, the prediction is the last gradient. ``h_{t+1}`` uses ``theta_{t-1}`` as printed
in the paper's Algorithm 2.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import arg_name, resolve
from gradkit.core.state import FIRST_MOMENT, HISTORY, PER_TENSOR, SECOND_MOMENT, StateKind
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, non_negative, positive

__all__ = ["scale_by_optimistic_amsgrad", "ScaleByOptimisticAMSGrad", "PREDICTORS", "rmpe"]

PREDICTORS = ("rmpe", "last")
OPTIMISTIC_OFFSET = StateKind("optimistic_offset", "iterate")


def rmpe(history: torch.Tensor, lam: float) -> torch.Tensor:
    """Regularized approximated minimal polynomial extrapolation of a sequence (Algorithm 3 of arXiv:1903.01435).

    Args:
        history: ``(r + 1, n)``, the sequence ``x_0..x_r``, oldest first.
        lam: regularisation added to ``U^T U`` normalised by its largest eigenvalue (>= 0).

    ``U = [x_{i+1} - x_i]``, ``(U^T U + lam I) z = 1``, ``c = z / 1^T z``, returns ``sum_{i<r} c_i x_i``.

    >>> import torch
    >>> x = torch.tensor([[4.0], [2.0], [1.0]], dtype=torch.float64)  # x_{i+1} = x_i / 2 + 0 -> 0
    >>> round(rmpe(x, 1e-12).item(), 6)  # the fixed point, where x_2 = 1 is still far off
    0.0
    """
    return _combine(_coefficients(_gram(history), lam), history)


def _gram(history):
    diffs = history[1:] - history[:-1]
    return diffs @ diffs.T


def _coefficients(gram, lam):
    gram = gram.double()
    r = gram.shape[0]
    top = torch.linalg.eigvalsh(gram)[-1].clamp_min(torch.finfo(torch.float64).tiny)
    z = torch.linalg.lstsq(gram / top + lam * torch.eye(r, dtype=gram.dtype), torch.ones(r, 1, dtype=gram.dtype)).solution
    return (z / z.sum()).squeeze(-1)


def _combine(c, history):
    return torch.tensordot(c.to(history.dtype), history[:-1], dims=1)


@register_transform(
    "scale_by_optimistic_amsgrad",
    summary="Optimistic AMSGrad: AMSGrad plus a half-step along an extrapolated guess of the next gradient",
    reference="Wang, Li, Chen & Li, An Optimistic Acceleration of AMSGrad for Nonconvex Optimization, "
              "arXiv:1903.01435",
)
class ScaleByOptimisticAMSGrad(GradientTransform):
    """OPT-AMSGrad's step from ``w_t`` to ``w_{t+1}``, before the learning rate.

    Args:
        betas: ``(b1, b2)`` in [0, 1), the decay rates of ``theta`` and ``v``.
        eps: the initial value of ``v`` and ``vhat`` (> 0; the paper's ``v_0 = eps``).
        history: ``r``, the number of gradient differences the prediction extrapolates (>= 1).
        lam: RMPE's regularisation (>= 0).
        predictor: ``"rmpe"`` (the paper) or ``"last"`` (``m_{t+1} = g_t``).

    ``u_t = theta_t / sqrt(vhat_t) + d_{t+1} - d_t`` with ``d_{t+1} = (b1 theta_{t-1} + (1 - b1) m_{t+1}) /
    sqrt(vhat_t)``. Reference: Wang et al., arXiv:1903.01435, Algorithms 2 and 3.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> t = gradkit.chain(gradkit.scale_by_optimistic_amsgrad(betas=(0.0, 0.0), predictor="last"),
    ...                   gradkit.scale_by_learning_rate())
    >>> opt = gradkit.Optimizer([w], t, {"lr": 0.1})
    >>> w.grad = torch.tensor([2.0]); opt.step(); w.detach()   # AMSGrad step and the guessed next one
    tensor([0.8000])
    """

    name = "optimistic_amsgrad"
    kind = PER_TENSOR
    shard_aware = True  # the RMPE Gram matrix's sums over local shards are completed over the mesh (ctx.shards)
    state_kinds = {"exp_avg": FIRST_MOMENT, "prev_exp_avg": FIRST_MOMENT, "exp_avg_sq": SECOND_MOMENT,
                   "max_exp_avg_sq": SECOND_MOMENT, "offset": OPTIMISTIC_OFFSET, "history": HISTORY}

    def spans_params(self, group):
        return True  # the RMPE predictor's Gram matrix covers the whole group

    def __init__(self, betas=(0.9, 0.999), eps=1e-8, history=5, lam=1e-8, predictor="rmpe"):
        self.betas = betas
        self.eps = eps
        self.history = history
        self.lam = lam
        self.predictor = predictor

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        positive(self.eps, group, "eps")
        non_negative(self.lam, group, "lam")
        r = resolve(self.history, group)
        if isinstance(r, bool) or not isinstance(r, int):
            raise TypeError(f"{arg_name(self.history, 'history')} must be an int, got {type(r).__name__} {r!r}")
        if r < 1:
            raise ValueError(f"{arg_name(self.history, 'history')} must be an int >= 1 (gradient differences), got {r!r}")
        predictor = resolve(self.predictor, group)
        if predictor not in PREDICTORS:
            raise ValueError(f"{arg_name(self.predictor, 'predictor')} must be one of {PREDICTORS}, got {predictor!r}")

    def init(self, params, ctx):
        eps = float(ctx.value(self.eps))
        state = {key: [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
                 for key in ("exp_avg", "prev_exp_avg", "offset")}
        for key in ("exp_avg_sq", "max_exp_avg_sq"):
            state[key] = [torch.full_like(p, eps, memory_format=torch.preserve_format) for p in params]
        if ctx.value(self.predictor) == "rmpe":
            r = int(ctx.value(self.history))
            # the ring of the last r + 1 gradients on a last dim, so that the state shards with its param's rows
            # (stacked from zeros_like, which keeps a DTensor's placement: new_zeros would replicate it)
            state["history"] = [torch.stack([torch.zeros_like(p)] * (r + 1), dim=-1) for p in params]
        return state

    def scalars(self, group, step):
        b1, b2 = (float(b) for b in resolve(self.betas, group))
        return {"b1": b1, "one_minus_b1": 1.0 - b1, "b2": b2, "one_minus_b2": 1.0 - b2}

    def update(self, updates, state, params, ctx):
        s = ctx.scalars(self)
        ops = ctx.ops
        exp_avg, prev = state["exp_avg"], state["prev_exp_avg"]
        torch._foreach_copy_(prev, exp_avg)
        ops.lerp_(exp_avg, updates, s["one_minus_b1"])
        ops.mul_(state["exp_avg_sq"], s["b2"])
        ops.addcmul_(state["exp_avg_sq"], updates, updates, s["one_minus_b2"])
        ops.maximum_(state["max_exp_avg_sq"], state["exp_avg_sq"])
        guess = self._predict(updates, state, ctx)
        denom = ops.sqrt(state["max_exp_avg_sq"])
        # h_{t+1} = b1 theta_{t-1} + (1 - b1) m_{t+1}; d_{t+1} = h_{t+1} / sqrt(vhat_t)
        hint = ops.mul(prev, s["b1"])
        torch._foreach_add_(hint, guess, alpha=s["one_minus_b1"])
        torch._foreach_div_(hint, denom)
        out = torch._foreach_div(exp_avg, denom)
        torch._foreach_add_(out, hint)
        torch._foreach_sub_(out, state["offset"])
        torch._foreach_copy_(state["offset"], hint)
        return ctx.fresh(out)

    def _predict(self, updates, state, ctx):
        if ctx.value(self.predictor) == "last":
            return updates
        history = state["history"]
        steps = ctx.steps
        r1 = history[0].shape[-1] if history else 0
        torch._foreach_copy_([h[..., (t - 1) % r1] for h, t in zip(history, steps)], updates)  # ring slot of g_t
        order = [[(t + j) % r1 for j in range(r1)] for t in steps]  # oldest first
        ready = [i for i, t in enumerate(steps) if t >= r1]
        guess = list(updates)
        if not ready:
            return guess
        views = [history[i].reshape(-1, r1).T[order[i]] for i in ready]
        if ctx.shards is None:
            gram = sum(_gram(v.double()) for v in views)
        else:  # each tensor's Gram matrix of its local rows, completed over the mesh, then summed in order
            partials = ctx.shards.sum(torch.stack([_gram(v.double()) for v in views], dim=-1), ready)
            gram = sum(partials.unbind(-1))
        c = _coefficients(gram, float(ctx.value(self.lam)))
        for i, v in zip(ready, views):
            guess[i] = _combine(c, v).view_as(updates[i])
        return guess

    def __repr__(self):
        return (f"ScaleByOptimisticAMSGrad(betas={self.betas!r}, eps={self.eps!r}, history={self.history!r}, "
                f"lam={self.lam!r}, predictor={self.predictor!r})")


scale_by_optimistic_amsgrad = ScaleByOptimisticAMSGrad
