"""AutoClip: clip the group's gradient norm at a percentile of the norms seen so far.

Seetharaman, Wichern, Pardo & Le Roux, "AutoClip: Adaptive Gradient Clipping for Source Separation
Networks", IEEE MLSP 2020, arXiv:2007.14469; official code https://github.com/pseeth/autoclip.

At every step, with ``n_t`` the 2-norm of all updates of the param group::

    history <- history + [n_t]
    threshold_t = percentile(history, p)            (linear interpolation, as numpy.percentile)
    updates <- updates * min(1, threshold_t / (n_t + 1e-6))     (torch.nn.utils.clip_grad_norm_)

so the clipped norm never exceeds ``threshold_t``. As in the paper's code, the current norm enters
the history before the percentile is taken (so the first step is clipped to its own norm, i.e. not
at all up to the 1e-6). The paper's code
keeps every norm; here the history is a ring buffer of the last ``history_size`` norms (memory
bounded; with ``history_size`` >= the number of steps the two agree). The buffer lives in the
optimizer's group state, so it is saved in the state_dict. Everything stays on the device: no host
synchronisation per step.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import check_hyper
from gradkit.core.state import PER_TENSOR
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms.clipping import global_norm

__all__ = ["autoclip", "AutoClip"]


@register_transform(
    "autoclip",
    summary="clip the gradient norm at the p-th percentile of the history of gradient norms (AutoClip)",
    reference="Seetharaman, Wichern, Pardo & Le Roux, AutoClip: Adaptive Gradient Clipping for Source Separation "
              "Networks, IEEE MLSP 2020, arXiv:2007.14469; https://github.com/pseeth/autoclip",
)
class AutoClip(GradientTransform):
    """Clip the group's gradient norm at a percentile of the norms seen so far.

    Args:
        percentile: the percentile ``p`` in [0, 100] of the history used as the threshold.
        history_size: the last norms kept (a ring buffer in the group state).

    ``u <- u * min(1, percentile(history, p) / (||u|| + 1e-6))``. Reference: Seetharaman et al., IEEE MLSP
    2020, arXiv:2007.14469; https://github.com/pseeth/autoclip.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.zeros(1))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.autoclip(0.0), gradkit.scale(-1.0)))
    >>> for g in (1.0, 4.0):
    ...     w.grad = torch.tensor([g]); opt.step()
    >>> round(w.item(), 4)  # the second step is clipped to the smallest norm so far
    -2.0
    """

    name = "autoclip"
    kind = PER_TENSOR
    shard_aware = True  # the global norm of local shards is completed over the mesh (ctx.shards)

    def spans_params(self, group):
        return True  # the global norm of the group

    def __init__(self, percentile=10.0, history_size=1000):
        self.percentile = percentile
        self.history_size = history_size

    def validate(self, group):
        check_hyper(self.percentile, group, "percentile",
                    lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 100, "in [0, 100]")
        check_hyper(self.history_size, group, "history_size",
                    lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 1, "an int >= 1")

    def update(self, updates, state, params, ctx):
        if not updates:
            return updates
        size = int(ctx.value(self.history_size))
        norm = global_norm(updates, shards=ctx.shards).to(updates[0].device)
        gs = ctx.group_state
        count = gs.get("count", 0)  # norms recorded so far (a plain int: no host sync to read it)
        history = gs.get("history")
        if history is None or history.numel() != size:
            history, count = self._resized(history, count, size, norm.device)
            gs["history"] = history
        history[count % size] = norm  # ring buffer: once full, overwrite the oldest norm
        count += 1
        gs["count"] = count
        filled = history[: min(count, size)]
        threshold = torch.quantile(filled, float(ctx.value(self.percentile)) / 100.0)
        coef = torch.clamp(threshold / (norm + 1e-6), max=1.0)
        updates = ctx.writable(updates)
        torch._foreach_mul_(updates, coef)
        return updates

    @staticmethod
    def _resized(history, count, size, device):
        """A buffer of ``size`` norms keeping what fits of an old one (history_size changed)."""
        new = torch.zeros(size, dtype=torch.float32, device=device)
        kept = 0
        if history is not None and count:
            kept = min(count, history.numel(), size)
            new[:kept] = history[:kept]
        return new, kept


autoclip = AutoClip
