"""U-DoG: UniXGrad's two-query accelerated step with DoG's distance-over-gradients step size (parameter-free).

Kreisler, Ivgi, Hinder & Carmon, "Accelerated Parameter-Free Stochastic Optimization", COLT 2024,
arXiv:2404.00666. Building blocks: UniXGrad (Kavis, Levy, Bach & Cevher, NeurIPS 2019, arXiv:1910.13857)
and DoG (Ivgi, Hinder & Carmon, ICML 2023, arXiv:2302.12022; official code
https://github.com/formll/dog, package ``dog-optimizer``, which has DoG and L-DoG but no U-DoG).

One iteration ``t = 1, 2, ...`` queries two stochastic gradients. With ``x_0`` the initial point, one
param group taken as one vector, ``Pi`` the projection onto the ball ``||x - x_0|| <= max_distance``
(no projection by default) and ``lr`` a multiplier (DoG's ``c``, 1 by default)::

    r_0 = reps_rel (1 + ||x_0||),   S_0 = r_0,   W_0 = 0,   y_0 = x_0,   G_0 = ||m_1||^2
    alpha_t = S_{t-1} / r_{t-1}                    (= t while the distance estimate stays put)
    w_t = alpha_t r_{t-1} = S_{t-1},   W_t = W_{t-1} + w_t
    eta_t = lr r_{t-1} / (sqrt(G_{t-1}) + eps)
    xt_t = (W_{t-1} xb_{t-1} + w_t y_{t-1}) / W_t;           m_t = grad f(xt_t)      (query 1)
    x_t  = Pi(y_{t-1} - alpha_t eta_t m_t)
    xb_t = (W_{t-1} xb_{t-1} + w_t x_t) / W_t;               g_t = grad f(xb_t)      (query 2)
    y_t  = Pi(y_{t-1} - alpha_t eta_t g_t)
    G_t  = G_{t-1} + alpha_t^2 ||g_t - m_t||^2
    r_t  = max(r_{t-1}, ||x_t - x_0||, ||y_t - x_0||),     S_t = S_{t-1} + r_t

The output is ``xb_t``, the ``w``-weighted average of the ``x_t``. As UniXGrad, the step-size
denominator sums the squared differences of the two gradients of an iteration (which shrink on a smooth
problem without noise: the source of acceleration); as DoG, the numerator is the largest distance from
``x_0`` seen so far, starting at the tiny ``r_eps = reps_rel (1 + ||x_0||)`` (the official DoG
convention), and the first query moves ``x_1`` exactly ``lr r_eps`` from ``x_0``. The weights
``alpha_t`` follow DoG's distance-weighted averaging (``alpha_t = t`` as UniXGrad when the estimate is
constant).

Each :meth:`update` consumes ONE gradient (a half iteration) and moves the params to the next query
point: after query 1 to ``xb_t``, after query 2 to ``xt_{t+1}``. A plain training loop
(``loss.backward(); opt.step()``) therefore runs U-DoG with a fresh batch per query, ``T`` iterations
in ``2 T`` steps; :class:`gradkit.optim.UDoG` also offers ``step(closure)`` for whole iterations and
``eval()``/``train()`` to put the output point ``xb`` into the params.

What is reconstructed rather than copied from the paper's algorithm box (its text was not available
to this implementation; the equations above are UniXGrad's with DoG's quantities substituted, and are
what the tests check):

- the paper's "iterate stabilization" techniques and its use of loose bounds on ``d_0`` and on the noise
  magnitude (both named in its abstract) are not reproduced. Offered instead: the projection onto the
  ball of radius ``max_distance`` around ``x_0`` (where a loose bound on ``d_0`` can be given; off by
  default); the denominator is seeded with the first gradient's squared norm ``||m_1||^2`` and takes no
  noise bound;
- the weights: ``alpha_t = S_{t-1} / r_{t-1}`` in the steps, ``w_t = alpha_t r_{t-1}`` in the averages;
- one estimate per param group (as the official DoG's default); ``eps`` is added to ``sqrt(G)``.

State: ``x0`` (the initial point), ``y`` (UniXGrad's second sequence) and ``m`` (the first gradient of
the current iteration), per param; the group keeps the iteration count, the phase, ``r``, ``S``,
``W``, ``G``, ``alpha``, ``w``, the step size and ``||x_t - x_0||``. A step whose lr is 0 leaves the
params and every state where they are (it still consumes the gradient).
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import check_hyper
from gradkit.core.state import GRADIENT, ITERATE, PER_TENSOR
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import non_negative, positive
from gradkit.transforms._reduce import dot_sum

__all__ = ["scale_by_udog", "ScaleByUDoG"]


def _max_distance(value, group) -> float:
    return float(check_hyper(value, group, "max_distance",
                             lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and float(x) > 0,
                             "a number > 0 (math.inf for no projection)"))


@register_transform(
    "scale_by_udog",
    summary="U-DoG: UniXGrad's two-query accelerated step with DoG's step size (one query per step; ends a chain)",
    reference="Kreisler, Ivgi, Hinder & Carmon, Accelerated Parameter-Free Stochastic Optimization, COLT 2024, "
              "arXiv:2404.00666",
)
class ScaleByUDoG(GradientTransform):
    """U-DoG (see the module docstring); applies ``lr`` itself and ends a chain.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.scale_by_udog(lr=1.0, reps_rel=0.1), {"lr": 1.0})
    >>> w.grad = torch.tensor([0.5, -0.5]); opt.step(); w.detach()   # x_1: lr r_eps from x_0 along -m_1
    tensor([ 0.7712, -1.7712])
    """

    name = "udog"
    kind = PER_TENSOR
    shard_aware = True  # its group sums over local shards are completed over the mesh (ctx.shards)
    state_kinds = {"x0": ITERATE, "y": ITERATE, "m": GRADIENT}
    group_state_keys = ("t", "phase", "r", "S", "W", "G", "alpha", "w", "eta", "dist_x")
    applies_lr = True

    def spans_params(self, group):
        return True  # its distance and gradient sums cover the whole group

    def __init__(self, lr=1.0, reps_rel=1e-6, max_distance=math.inf, eps=1e-8):
        self.lr = lr
        self.reps_rel = reps_rel
        self.max_distance = max_distance
        self.eps = eps

    def validate(self, group):
        non_negative(self.lr, group, "lr")
        positive(self.reps_rel, group, "reps_rel")
        _max_distance(self.max_distance, group)
        non_negative(self.eps, group, "eps")

    def init(self, params, ctx):
        return {"x0": [p.detach().clone(memory_format=torch.preserve_format) for p in params],
                "y": [p.detach().clone(memory_format=torch.preserve_format) for p in params],
                "m": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}

    @staticmethod
    def _norm(tensors, shards) -> float:
        return math.sqrt(max(dot_sum(tensors, tensors, shards).item(), 0.0))

    @staticmethod
    def _pull(points, offset, x0, dist, radius):
        """Pi: put ``points`` (in place) on the ball ``||x - x0|| <= radius`` given ``offset = points - x0`` and
        its norm ``dist``; returns the distance after."""
        if dist <= radius:
            return dist
        torch._foreach_mul_(offset, radius / dist)
        torch._foreach_add_(offset, x0)
        torch._foreach_copy_(points, offset)
        return radius

    def update(self, updates, state, params, ctx):
        grads = ctx.materialize(updates, params)
        x0, y, m = state["x0"], state["y"], state["m"]
        shards = ctx.shards
        est = ctx.group_state
        if not est:
            r0 = float(ctx.value(self.reps_rel)) * (1.0 + self._norm(list(x0), shards))
            est.update(t=1, phase=0, r=r0, S=r0, W=0.0, G=0.0, alpha=1.0, w=r0, eta=0.0, dist_x=0.0)
        lr = float(ctx.value(self.lr))
        if lr == 0.0:
            ctx.multiply(0.0)
            return grads
        radius = _max_distance(self.max_distance, ctx.group)
        eps = float(ctx.value(self.eps))
        alpha, w = est["alpha"], est["w"]
        if est["phase"] == 0:  # grads = m_t at xt_t: step to x_t, move the params to xb_t
            if est["G"] == 0.0:  # the seed G_0 = ||m_1||^2 (and while every gradient so far was zero)
                est["G"] = dot_sum(grads, grads, shards).item()
            W = est["W"] + w
            eta = lr * est["r"] / (math.sqrt(max(est["G"], 0.0)) + eps)
            x = torch._foreach_add(y, grads, alpha=-alpha * eta)
            offset = torch._foreach_sub(x, x0)
            est["dist_x"] = self._pull(x, offset, x0, self._norm(offset, shards), radius)
            torch._foreach_copy_(m, grads)
            # xb_t - xt_t = (w_t / W_t)(x_t - y_{t-1})
            torch._foreach_sub_(x, y)
            torch._foreach_mul_(x, w / W)
            est.update(W=W, eta=eta, phase=1)
            return ctx.fresh(x)
        # grads = g_t at xb_t: step y, update the estimates, move the params to xt_{t+1}
        eta = est["eta"]
        torch._foreach_add_(y, grads, alpha=-alpha * eta)
        offset = torch._foreach_sub(y, x0)
        diff = torch._foreach_sub(grads, m)
        # one host sync for both sums
        dist_sq, diff_sq = torch.stack([dot_sum(offset, offset, shards), dot_sum(diff, diff, shards)]).tolist()
        dist_y = self._pull(y, offset, x0, math.sqrt(max(dist_sq, 0.0)), radius)
        G = est["G"] + alpha * alpha * diff_sq
        r = max(est["r"], est["dist_x"], dist_y)
        S = est["S"] + r
        w_next = S
        W_next = est["W"] + w_next
        est.update(t=est["t"] + 1, phase=0, G=G, r=r, S=S, alpha=S / r, w=w_next)
        # xt_{t+1} - xb_t = (w_{t+1} / W_{t+1})(y_t - xb_t)
        move = torch._foreach_sub(y, params)
        torch._foreach_mul_(move, w_next / W_next)
        return ctx.fresh(move)

    def __repr__(self):
        return (f"ScaleByUDoG(lr={self.lr!r}, reps_rel={self.reps_rel!r}, max_distance={self.max_distance!r}, "
                f"eps={self.eps!r})")


scale_by_udog = ScaleByUDoG
