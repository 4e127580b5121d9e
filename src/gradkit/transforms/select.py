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
from gradkit.core.transform import Chain, GradientTransform, as_inner, init_inner, update_inner
from gradkit.registry import register_transform

__all__ = ["select_by_group", "SelectByGroup"]

_BRANCHES = ("on", "off")


@register_transform("select_by_group", summary="apply one of two transforms to a param group, chosen by a group flag")
class SelectByGroup(GradientTransform):
    """Run ``on`` for param groups whose ``flag`` is True and ``off`` for the others.

    Args:
        flag: a group flag reference such as ``hp("use_muon")``.
        on, off: the transforms (or chains) of the two branches; their state is nested under ``on.`` / ``off.``.

    ``u <- on(u)`` if ``group[flag]`` else ``off(u)``. Reference: Muon's official recipe (separate rules for
    hidden matrices and the rest), https://github.com/KellerJordan/Muon.

    >>> import torch, gradkit
    >>> a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    >>> t = gradkit.chain(gradkit.select_by_group(gradkit.hp("signed"), on=gradkit.sign_momentum(), off=gradkit.trace()),
    ...                   gradkit.scale_by_learning_rate())
    >>> opt = gradkit.Optimizer([{"params": [a], "signed": True}, {"params": [b], "signed": False}], t, {"lr": 0.1})
    >>> a.grad, b.grad = torch.tensor([5.0]), torch.tensor([5.0]); opt.step()
    >>> round(a.item(), 4), round(b.item(), 4), sorted(opt.state[a])
    (0.9, 0.5, ['select.on.sign_momentum.exp_avg', 'step'])
    """

    name = "select"
    # The branches are chains: they materialize the pending form themselves where they need to.
    scale_aware = True

    def __init__(self, flag=hp("use_branch"), on: GradientTransform | None = None, off: GradientTransform | None = None):
        for label, t in (("on", on), ("off", off)):
            if not isinstance(t, GradientTransform):
                raise TypeError(f"{label} must be a GradientTransform, got {type(t).__name__}")
        self.flag = flag
        self.on = as_inner(on)
        self.off = as_inner(off)
        self.supports_sparse = self.on.supports_sparse and self.off.supports_sparse

    def children(self):
        return {"on": self.on, "off": self.off}

    def _branch(self, group) -> tuple[str, Chain]:
        flag = check_hyper(self.flag, group, "flag", lambda x: isinstance(x, bool), "True or False")
        return ("on", self.on) if flag else ("off", self.off)

    def validate(self, group):
        self._branch(group)[1].validate(group)

    def init(self, params, ctx):
        label, branch = self._branch(ctx.group)
        return init_inner(label, branch, params, ctx)

    def update(self, updates, state, params, ctx):
        label, branch = self._branch(ctx.group)
        return update_inner(label, branch, updates, state, params, ctx)


select_by_group = SelectByGroup
