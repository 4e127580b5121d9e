"""Weight decay as a transform: where it stands in the chain decides coupled or decoupled.

Before an adaptive transform (``chain(add_decayed_weights(wd), scale_by_adam(), ...)``) it is L2
regularisation coupled to the gradient (torch.optim.Adam's ``weight_decay``); after it
(``chain(scale_by_adam(), add_decayed_weights(wd), scale_by_learning_rate())``) it is decoupled
weight decay (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019), the
update of torch.optim.AdamW.
"""
from __future__ import annotations

from gradkit.core.hyper import hp, resolve
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean, non_negative

__all__ = ["add_decayed_weights", "AddDecayedWeights"]


@register_transform(
    "add_decayed_weights",
    summary="add weight_decay * params to updates (coupled L2 or decoupled decay, by position in the chain)",
    reference="Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019; https://github.com/loshchil/AdamW-and-SGDW",
)
class AddDecayedWeights(GradientTransform):
    """Add ``weight_decay * params`` to the update (folded into the pending form: ``p *= 1 - lr * wd``).

    Args:
        weight_decay: the decay coefficient (>= 0), usually ``hp("weight_decay")``.
        enabled: a flag (or group flag reference) that turns it off, for recipes that choose per group.

    ``u <- u + wd * p``: coupled L2 before an adaptive transform, decoupled after it. Reference:
    Loshchilov & Hutter, ICLR 2019; https://github.com/loshchil/AdamW-and-SGDW.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.tensor([2.0]))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.add_decayed_weights(0.5), gradkit.scale_by_learning_rate()),
    ...                         {"lr": 0.1})
    >>> w.grad = torch.tensor([0.0]); opt.step(); round(w.item(), 4)  # 2 * (1 - 0.1 * 0.5)
    1.9
    """

    name = "decay"
    # The decay is folded into the pending affine form; it costs one pass over the params at apply
    # time (params *= 1 - lr * wd), as in torch.optim.AdamW.
    scale_aware = True
    fusable = True

    def __init__(self, weight_decay=hp("weight_decay"), enabled=True):
        self.weight_decay = weight_decay
        self.enabled = enabled

    def validate(self, group):
        non_negative(self.weight_decay, group, "weight_decay")
        boolean(self.enabled, group, "enabled")

    def scalars(self, group, step):
        return {"weight_decay": float(resolve(self.weight_decay, group))}

    def update(self, updates, state, params, ctx):
        if ctx.value(self.enabled):
            ctx.add_decay(ctx.scalars(self)["weight_decay"])
        return updates


add_decayed_weights = AddDecayedWeights
