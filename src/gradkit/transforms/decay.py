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
    name = "decay"
    # The decay is folded into the pending affine form; it costs one pass over the params at apply
    # time (params *= 1 - lr * wd), as in torch.optim.AdamW.
    scale_aware = True

    def __init__(self, weight_decay=hp("weight_decay"), enabled=True):
        self.weight_decay = weight_decay
        self.enabled = enabled

    def validate(self, group):
        non_negative(self.weight_decay, group, "weight_decay")
        boolean(self.enabled, group, "enabled")

    def update(self, updates, state, params, ctx):
        if not ctx.value(self.enabled):
            return updates
        ctx.add_decay(float(ctx.value(self.weight_decay)))
        return updates

    def fused_scalars(self, group, step):
        return {"weight_decay": float(resolve(self.weight_decay, group))}

    def fused_affine(self, scale, decay, scalars, group):
        return (scale, decay + scalars["weight_decay"]) if resolve(self.enabled, group) else (scale, decay)


add_decayed_weights = AddDecayedWeights
