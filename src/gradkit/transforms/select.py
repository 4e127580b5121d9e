"""Run one of two transforms per param group, chosen by a flag of the group.

Lets one optimizer give different param groups different update rules (for instance Muon for hidden
matrices and AdamW for everything else) while sharing the rest of the chain::

    chain(select_by_group(hp("use_muon"), on=scale_by_trust_region(), off=scale_by_adam()),
          add_decayed_weights(), scale_by_learning_rate())

Each branch keeps its state under ``on.`` / ``off.`` and only the selected branch's
hyperparameters are validated for a group. The branch's transforms name their group-level state
(``ctx.group_state``) by their own namespaces.
"""
from __future__ import annotations

from gradkit.core.hyper import check_hyper, hp
from gradkit.core.transform import Chain, GradientTransform
from gradkit.registry import register_transform

__all__ = ["select_by_group", "SelectByGroup"]

_BRANCHES = ("on", "off")


@register_transform("select_by_group", summary="apply one of two transforms to a param group, chosen by a group flag")
class SelectByGroup(GradientTransform):
    name = "select"
    # The branches are chains: they materialize the pending form themselves where they need to.
    scale_aware = True

    def __init__(self, flag=hp("use_branch"), on: GradientTransform | None = None, off: GradientTransform | None = None):
        for label, t in (("on", on), ("off", off)):
            if not isinstance(t, GradientTransform):
                raise TypeError(f"{label} must be a GradientTransform, got {type(t).__name__}")
        self.flag = flag
        self.on = on if isinstance(on, Chain) else Chain(on)
        self.off = off if isinstance(off, Chain) else Chain(off)
        self.supports_sparse = self.on.supports_sparse and self.off.supports_sparse

    def _branch(self, group) -> tuple[str, Chain]:
        flag = check_hyper(self.flag, group, "flag", lambda x: isinstance(x, bool), "True or False")
        return ("on", self.on) if flag else ("off", self.off)

    def validate(self, group):
        self._branch(group)[1].validate(group)

    def init(self, params, ctx):
        label, branch = self._branch(ctx.group)
        namespace = ctx.namespace
        state = {f"{label}.{k}": v for k, v in branch.init(params, ctx).items()}
        ctx.namespace = namespace
        return state

    def update(self, updates, state, params, ctx):
        label, branch = self._branch(ctx.group)
        prefix = label + "."
        own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        return branch.update(updates, own, params, ctx)

    def kind_of(self, key):
        label, _, rest = key.partition(".")
        return (self.on if label == "on" else self.off).kind_of(rest)


select_by_group = SelectByGroup
