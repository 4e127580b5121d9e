"""ADOPT: Adam whose second moment is updated after it normalises the gradient, and momentum after that.

Taniguchi, Harada, Minegishi, Oshima, Jeong, Nagahara, Iiyama, Suzuki, Iwasawa & Matsuo, "ADOPT:
Modified Adam Can Converge with Any beta_2 with the Optimal Rate", NeurIPS 2024, arXiv:2411.02853;
official code https://github.com/iShohei220/adopt (package ``torch-adopt``, module ``adopt``).

    t = 1:   v_1 = g_1^2,  no step                          (the first gradient only initialises v)
    t > 1:   n_t = clip(g_t / max(sqrt(v_{t-1}), eps), (t - 1)^(1/4))
             m_t = b1 m_{t-1} + (1 - b1) n_t
             v_t = b2 v_{t-1} + (1 - b2) g_t^2
             u_t = m_t

The update uses ``v_{t-1}`` (this is what makes the normalised gradient independent of g_t and the
method convergent for any b2), and the momentum is taken of the normalised gradient. The clipping
(``clip_exponent``; ``None`` disables it) is the official code's default ``clip_lambda = step**0.25``
(Algorithm 2 of the paper, the stable variant); eps bounds the root from below, as in the official code.
Step 1 leaves the update at zero; :class:`SkipFirstStep` (placed after the decay) makes the whole step
a no-op there, as in the official code, where neither the step nor the decoupled decay is applied.
"""
from __future__ import annotations

import torch

from gradkit.core.hyper import check_hyper
from gradkit.core.state import FIRST_MOMENT, SECOND_MOMENT
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import betas as check_betas, positive

__all__ = ["scale_by_adopt", "ScaleByAdopt", "skip_first_step", "SkipFirstStep"]


@register_transform(
    "scale_by_adopt",
    summary="ADOPT: momentum of the gradient normalised by the previous second moment (converges for any beta2)",
    reference="Taniguchi et al., ADOPT: Modified Adam Can Converge with Any beta_2 with the Optimal Rate, NeurIPS 2024, "
              "arXiv:2411.02853; https://github.com/iShohei220/adopt",
)
class ScaleByAdopt(GradientTransform):
    """ADOPT's clipped, normalised momentum (args ``betas``, ``eps``, ``clip_exponent``); see the module docstring.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> t = gradkit.chain(gradkit.scale_by_adopt(), gradkit.scale_by_learning_rate())
    >>> opt = gradkit.Optimizer([w], t, {"lr": 0.1})
    >>> for _ in range(2):
    ...     w.grad = torch.tensor([0.5, -0.5]); opt.step()
    >>> w.detach()
    tensor([ 0.9900, -1.9900])
    """

    name = "adopt"
    state_kinds = {"exp_avg": FIRST_MOMENT, "exp_avg_sq": SECOND_MOMENT}

    def __init__(self, betas=(0.9, 0.9999), eps=1e-6, clip_exponent=0.25):
        self.betas = betas
        self.eps = eps
        self.clip_exponent = clip_exponent

    def validate(self, group):
        check_betas(self.betas, group, "betas")
        positive(self.eps, group, "eps")
        check_hyper(self.clip_exponent, group, "clip_exponent",
                    lambda x: x is None or (isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x < 1e3),
                    "None or a number >= 0")

    def init(self, params, ctx):
        return {"exp_avg": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
                "exp_avg_sq": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}

    def update(self, updates, state, params, ctx):
        b1, b2 = (float(b) for b in ctx.value(self.betas))
        eps = float(ctx.value(self.eps))
        exponent = ctx.value(self.clip_exponent)
        first = [i for i, s in enumerate(ctx.steps) if s == 1]
        rest = [i for i, s in enumerate(ctx.steps) if s != 1]
        if first:
            torch._foreach_addcmul_([state["exp_avg_sq"][i] for i in first], [updates[i] for i in first],
                                    [updates[i] for i in first])
        if rest:
            g = [updates[i] for i in rest]
            m = [state["exp_avg"][i] for i in rest]
            v = [state["exp_avg_sq"][i] for i in rest]
            denom = torch._foreach_sqrt(v)
            torch._foreach_clamp_min_(denom, eps)
            normed = torch._foreach_div(g, denom)
            if exponent is not None:
                bounds = [float(ctx.steps[i] - 1) ** float(exponent) for i in rest]
                torch._foreach_clamp_max_(normed, bounds)
                torch._foreach_clamp_min_(normed, [-b for b in bounds])
            torch._foreach_lerp_(m, normed, 1.0 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, g, g, 1.0 - b2)
        return state["exp_avg"]  # zeros for tensors at step 1


@register_transform("skip_first_step", summary="make the first step of each tensor a no-op (ADOPT's initialisation step)")
class SkipFirstStep(GradientTransform):
    """Multiplies the pending update, decay included, by 0 on each tensor's first step.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale(-1.0), gradkit.skip_first_step()))
    >>> for _ in range(2):
    ...     w.grad = torch.tensor([0.5]); opt.step(); print(w.detach())
    tensor([1.])
    tensor([0.5000])
    """

    name = "skip_first_step"
    scale_aware = True

    def scalars(self, group, step):
        return {"keep": 0.0 if step == 1 else 1.0}

    def update(self, updates, state, params, ctx):
        ctx.multiply(ctx.scalars(self)["keep"])
        return updates


scale_by_adopt = ScaleByAdopt
skip_first_step = SkipFirstStep
