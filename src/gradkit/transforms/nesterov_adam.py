"""Adam with a Nesterov look-ahead numerator, as AdamP's ``nesterov`` option.

Heo et al., "AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights",
ICLR 2021, arXiv:2006.08217; official code https://github.com/clovaai/AdamP. The moments are Adam's
(Kingma & Ba, ICLR 2015); with ``nesterov=True`` the numerator looks one step ahead::

    u_t = (b1 m_t + (1 - b1) g_t) / (1 - b1^t) / (sqrt(v_t / (1 - b2^t)) + eps)

This is the official AdamP code's form (no momentum schedule, unlike NAdam). With ``nesterov=False``
it is ``scale_by_adam`` (the moments are updated with multiply-add as in the official code rather
than ``lerp``, which changes the last bit); the state layout is the same, so the flag may change per
group.
"""
from __future__ import annotations

from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean
from gradkit.transforms.adam import ScaleByAdam

__all__ = ["scale_by_nesterov_adam", "ScaleByNesterovAdam"]


@register_transform(
    "scale_by_nesterov_adam",
    summary="Adam whose numerator looks ahead, b1 m_t + (1 - b1) g_t (AdamP's nesterov option)",
    reference="Heo et al., AdamP, ICLR 2021, arXiv:2006.08217; https://github.com/clovaai/AdamP",
)
class ScaleByNesterovAdam(ScaleByAdam):
    """Adam with AdamP's look-ahead numerator.

    Args:
        betas, eps: as :class:`~gradkit.transforms.ScaleByAdam`.
        nesterov: use ``b1 m_t + (1 - b1) g_t`` as the numerator (False: Adam's ``m_t``).

    ``u_t = (b1 m_t + (1 - b1) g_t) / (1 - b1^t) / (sqrt(v_t / (1 - b2^t)) + eps)``. Reference: Heo et al.,
    ICLR 2021, arXiv:2006.08217; https://github.com/clovaai/AdamP.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_nesterov_adam(), gradkit.scale_by_learning_rate()),
    ...                         {"lr": 0.1})
    >>> w.grad = torch.tensor([2.0]); opt.step(); round(w.item(), 4)  # (0.9 * 0.2 + 0.1 * 2) / 0.1 / 2 = 1.9
    0.81
    """

    def __init__(self, betas=(0.9, 0.999), eps=1e-8, nesterov=True):
        super().__init__(betas, eps, amsgrad=False)
        self.nesterov = nesterov

    def validate(self, group):
        super().validate(group)
        boolean(self.nesterov, group, "nesterov")

    def update(self, updates, state, params, ctx):
        s = ctx.scalars(self)
        second = self.update_moments(updates, state, s, ctx)
        numerator = state["exp_avg"]
        if ctx.value(self.nesterov):
            numerator = ctx.ops.lerp(numerator, updates, s["one_minus_b1"])  # b1 m_t + (1 - b1) g_t, one pass
        return self.bias_corrected_quotient(numerator, second, s, ctx)

    predict = GradientTransform.predict  # the look-ahead needs the next gradient


scale_by_nesterov_adam = ScaleByNesterovAdam
