"""AdaMomentum: Adam whose second moment is the moving average of the squared *momentum*.

Wang, Kang, Qin, Wang, Xu, Zhang & Fu, "Rethinking Adam: A Twofold Exponential Moving Average
Approach", arXiv:2106.11514 (2021). No official code is published with the paper; this follows its
Algorithm 1:

    m_t = b1 m_{t-1} + (1 - b1) g_t
    v_t = b2 v_{t-1} + (1 - b2) m_t^2 + eps          (eps inside the average, as in AdaBelief)
    u_t = (m_t / (1 - b1^t)) / sqrt(v_t / (1 - b2^t))

The update is left pending as ``m_t / (sqrt(v_t) / sqrt(1 - b2^t))`` times ``1 / (1 - b1^t)`` (one
``addcdiv`` at apply time). ``amsgrad=True`` uses the running maximum of ``v_t`` (the AMSGrad variant
the paper's convergence analysis mentions; off by default).
"""
from __future__ import annotations

from gradkit.registry import register_transform
from gradkit.transforms.adam import ScaleByAdam

__all__ = ["scale_by_adamomentum", "ScaleByAdaMomentum"]


@register_transform(
    "scale_by_adamomentum",
    summary="Adam with the second moment taken of the momentum instead of the gradient (AdaMomentum)",
    reference="Wang et al., Rethinking Adam: A Twofold Exponential Moving Average Approach, arXiv:2106.11514",
)
class ScaleByAdaMomentum(ScaleByAdam):
    """AdaMomentum's moments; same arguments (``betas``, ``eps``, ``amsgrad``), state and validation as
    :class:`~gradkit.transforms.ScaleByAdam`, only the second moment differs.

    ``v_t = b2 v_{t-1} + (1 - b2) m_t^2 + eps``, ``u_t = (m_t / (1 - b1^t)) / sqrt(v_t / (1 - b2^t))``.
    Reference: Wang et al., arXiv:2106.11514 (Algorithm 1; no official code).

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_adamomentum(), gradkit.scale_by_learning_rate()),
    ...                         {"lr": 0.1})
    >>> w.grad = torch.tensor([2.0]); opt.step(); round(w.item(), 4)  # m_hat / sqrt(v_hat) = 1 / (1 - b1) at t = 1
    0.0001
    """

    name = "adamomentum"

    def update(self, updates, state, params, ctx):
        s = ctx.scalars(self)
        second = self.update_moments(updates, state, s, ctx)
        return self.bias_corrected_quotient(state["exp_avg"], second, s, ctx, eps=False)  # eps is inside v

    def predict(self, state, params, ctx):
        if not params:
            return []
        second = state["max_exp_avg_sq"] if ctx.value(self.amsgrad) else state["exp_avg_sq"]
        return self.bias_corrected_quotient(state["exp_avg"], second, ctx.scalars(self), ctx, eps=False)

    def update_moments(self, updates, state, s, ctx):
        ops, exp_avg, exp_avg_sq = ctx.ops, state["exp_avg"], state["exp_avg_sq"]
        ops.lerp_(exp_avg, updates, s["one_minus_b1"])
        ops.mul_(exp_avg_sq, s["b2"])
        ops.addcmul_(exp_avg_sq, exp_avg, exp_avg, s["one_minus_b2"])
        ops.add_(exp_avg_sq, s["eps"])
        return self.maybe_amsgrad(exp_avg_sq, state, ctx)


scale_by_adamomentum = ScaleByAdaMomentum
