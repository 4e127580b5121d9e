"""U-DoG: accelerated parameter-free SGD (UniXGrad's two gradient queries per iteration, DoG's step size).

Kreisler, Ivgi, Hinder & Carmon, "Accelerated Parameter-Free Stochastic Optimization", COLT 2024,
arXiv:2404.00666 (no official U-DoG package; DoG's official code is https://github.com/formll/dog).
The equations, and what in them is reconstructed rather than taken from the paper's algorithm box,
are in :mod:`gradkit.transforms.udog`.

    m_t at xt_t:  x_t = Pi(y_{t-1} - alpha_t eta_t m_t);   params -> xb_t (weighted average of the x's)
    g_t at xb_t:  y_t = Pi(y_{t-1} - alpha_t eta_t g_t);   params -> xt_{t+1}
    eta_t = lr r_t / sqrt(G),  r_t = max distance from x_0 (from reps_rel (1 + ||x_0||)),
    G = ||m_1||^2 + sum alpha_i^2 ||g_i - m_i||^2

Two ways to drive it:

- ``loss.backward(); opt.step()``: each step consumes one gradient (half an iteration, one query), so a
  plain training loop runs U-DoG with a fresh batch per query;
- ``opt.step(closure)``: a whole iteration, the closure called once per query (twice, or once to finish
  an iteration a plain ``step()`` began); it returns the first loss.

Between iterations the params hold the next query point ``xt``; ``opt.eval()`` puts the output, the
weighted average ``xb``, into the params (for evaluation or a model checkpoint) and ``opt.train()``
puts ``xt`` back; ``step()`` refuses to run in eval mode. The mode is a field of every param group
(``train_mode``), so it is in the state_dict.
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import flip_sign
from gradkit.transforms.udog import ScaleByUDoG, scale_by_udog

__all__ = ["UDoG"]

_MODE = "train_mode"


@register_optimizer("udog", summary="U-DoG: accelerated parameter-free SGD, UniXGrad with DoG step sizes "
                                    "(one gradient query per step; lr=1 by default)",
                    reference="Kreisler, Ivgi, Hinder & Carmon, Accelerated Parameter-Free Stochastic Optimization, "
                              "COLT 2024, arXiv:2404.00666")
class UDoG(Optimizer):
    """U-DoG (see the module docstring).

    Args:
        lr: a multiplier of the step size (DoG's ``c``); 1 by default, not to be tuned.
        reps_rel: the initial distance estimate relative to the initial point, ``r_eps = reps_rel (1 +
            ||x_0||)`` per param group (the official DoG convention; 1e-6 by default).
        max_distance: the radius of the ball around ``x_0`` the iterates are projected onto (a loose upper
            bound on the distance to a minimizer); ``math.inf`` (default) for no projection.
        eps: added to ``sqrt(G)`` in the step size's denominator.
        maximize, nonfinite, state_dtype: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit
        >>> w = torch.nn.Parameter(torch.tensor([3.0, -1.0]))
        >>> opt = gradkit.optim.UDoG([w], reps_rel=1e-3)
        >>> def closure():
        ...     opt.zero_grad(); loss = (w ** 2).sum(); loss.backward(); return loss
        >>> for _ in range(40):
        ...     _ = opt.step(closure)
        >>> opt.eval(); bool((w ** 2).sum() < 1e-3)
        True
    """

    def __init__(self, params, lr=1.0, reps_rel=1e-6, max_distance=math.inf, eps=1e-8, *, maximize=False,
                 nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, reps_rel=reps_rel, max_distance=max_distance, eps=eps, maximize=maximize)
        defaults[_MODE] = True
        transform = chain(flip_sign(hp("maximize")),
                          scale_by_udog(hp("lr"), hp("reps_rel"), hp("max_distance"), hp("eps")))
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)

    def _namespace(self) -> str:
        for ns, t in zip(self.transform.namespaces, self.transform.transforms):
            if isinstance(t, ScaleByUDoG):
                return ns
        raise RuntimeError("this optimizer's chain has no scale_by_udog transform")

    def _estimates(self, index: int) -> dict:
        return self.group_states[index].get(self._namespace(), {})

    @property
    def train_mode(self) -> bool:
        """True when the params hold the query point, False when they hold the average ``xb`` (eval)."""
        return all(g[_MODE] for g in self.param_groups)

    @torch.no_grad()
    def _move(self, to_train: bool) -> None:
        key = f"{self._namespace()}.y"
        for index, group in enumerate(self.param_groups):
            if group[_MODE] == to_train:
                continue
            est = self._estimates(index)
            # Only between iterations do the params hold xt_{t+1} = lerp(xb_t, y_t, c), c = w_{t+1} / W_{t+1};
            # mid-iteration (phase 1) and before the first iteration they already hold the average.
            if est and est["phase"] == 0 and est["W"] > 0.0:
                c = est["w"] / (est["W"] + est["w"])
                weight = c if to_train else -c / (1.0 - c)
                for p in group["params"]:
                    y = self.state.get(p, {}).get(key)
                    if y is not None:
                        p.copy_(p.to(y.dtype).lerp_(y.to(p.device), weight))
            group[_MODE] = to_train

    def eval(self) -> None:
        """Put the output point ``xb`` (the weighted average of the iterates) into the params."""
        self._move(False)

    def train(self) -> None:
        """Put the next query point back into the params (before training steps)."""
        self._move(True)

    def phase(self, index: int = 0) -> int:
        """0 when the next gradient is an iteration's first query (at ``xt``), 1 when its second (at ``xb``)."""
        est = self._estimates(index)
        return est["phase"] if est else 0

    def step(self, closure=None):
        if not self.train_mode:
            raise RuntimeError("U-DoG is in eval mode (the params hold the average xb): call optimizer.train() "
                               "before optimizer.step()")
        if closure is None:
            return super().step()
        loss = super().step(closure)
        if any(self.phase(i) == 1 for i in range(len(self.param_groups))):
            super().step(closure)  # the iteration's second query
        return loss
