"""Schedule-Free SGD and AdamW, and Schedule-Free around any gradkit chain.

Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less Scheduled", NeurIPS 2024,
arXiv:2405.15682; official code https://github.com/facebookresearch/schedule_free (package ``schedulefree``).

    u <- inner(g at y)                 SGD: g + wd y;   AdamW: g / (sqrt(v / (1 - b2^t)) + eps) + wd y
    z <- z - lr_t u;   x <- (1 - c) x + c z;   y <- (1 - beta) z + beta x          (schedule_free)

No learning-rate schedule is needed (a warm-up is built in: ``warmup_steps``); the params hold ``y``
during training. Call ``opt.eval()`` before evaluating or saving a model (the params become the
average ``x``) and ``opt.train()`` before training again; ``step()`` refuses to run in eval mode. The
mode is a field of every param group (``train_mode``), so it is in the state_dict. Batch-norm running
statistics gathered during training belong to ``y``: :func:`recompute_batchnorm_statistics` recomputes
them at ``x``.

Deviations from the official code: the optimizer starts in train mode (at the start x = y = z, so no
param moves; the official one starts in eval mode and needs ``train()`` first), and a step with lr 0 is
a no-op (see :mod:`gradkit.transforms.schedule_free`). The official closure and "paper" variants are
the same algorithm; ``AdamWScheduleFree``'s form is followed (its bias-corrected second moment, the
decay at ``y``).
"""
from __future__ import annotations

from typing import Iterable

import torch

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import GradientTransform, chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign
from gradkit.transforms.rms import scale_by_rms
from gradkit.transforms.schedule_free import ScheduleFreeTransform, momentum_of, schedule_free

__all__ = ["ScheduleFree", "ScheduleFreeSGD", "ScheduleFreeAdamW", "recompute_batchnorm_statistics"]

_REFERENCE = ("Defazio et al., The Road Less Scheduled, NeurIPS 2024, arXiv:2405.15682; "
              "https://github.com/facebookresearch/schedule_free")
_MODE = "train_mode"


class ScheduleFree(Optimizer):
    """Schedule-Free around any chain ``inner`` (the base direction, without the lr).

    Args:
        params: parameters or param groups.
        inner: the base direction, e.g. ``gradkit.chain(scale_by_rms(hp("betas")), add_decayed_weights())``.
        defaults: hyperparameters the chain reads; ``lr``, ``momentum`` (or ``betas``, whose first entry is
            the interpolation beta), ``warmup_steps``, ``r`` and ``weight_lr_power`` are added if missing.
        momentum_key: the group key holding beta (``"momentum"`` or ``"betas"``).
    """

    def __init__(self, params, inner: GradientTransform, defaults: dict | None = None, *, momentum_key="momentum",
                 maximize_key: str | None = "maximize", nonfinite="raise", state_dtype=None):
        defaults = {"lr": 1.0, "warmup_steps": 0, "r": 0.0, "weight_lr_power": 2.0, **(defaults or {}),
                    _MODE: True}
        defaults.setdefault(momentum_key, 0.9)
        head = [flip_sign(hp(maximize_key))] if maximize_key else []
        if maximize_key:
            defaults.setdefault(maximize_key, False)
        transform = chain(*head, schedule_free(inner, hp("lr"), hp(momentum_key), hp("warmup_steps"), hp("r"),
                                               hp("weight_lr_power")))
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)

    # -- the two points ---------------------------------------------------------------------------
    @property
    def train_mode(self) -> bool:
        """True when the params hold y (training), False when they hold x (evaluation)."""
        return all(g[_MODE] for g in self.param_groups)

    def _averager(self) -> tuple[str, ScheduleFreeTransform]:
        for ns, t in zip(self.transform.namespaces, self.transform.transforms):
            if isinstance(t, ScheduleFreeTransform):
                return ns, t
        raise RuntimeError("this optimizer's chain has no schedule_free transform")

    @torch.no_grad()
    def _move(self, to_train: bool) -> None:
        namespace, averager = self._averager()
        key = f"{namespace}.z"
        for group in self.param_groups:
            if group[_MODE] == to_train:
                continue
            beta = momentum_of(averager.momentum, group)
            # y = (1 - beta) z + beta x: from x to y is lerp(x, z, 1 - beta); back is lerp(y, z, 1 - 1/beta)
            weight = (1.0 - beta) if to_train else (1.0 - 1.0 / beta)
            pairs = [(p, self.state[p][key]) for p in group["params"] if key in self.state.get(p, {})]
            same = [(p, z) for p, z in pairs if p.dtype == z.dtype]
            if same:
                torch._foreach_lerp_([p for p, _ in same], [z.to(p.device) for p, z in same], weight)
            for p, z in pairs:  # low-precision params with float32 z: move in float32
                if p.dtype != z.dtype:
                    p.copy_(p.to(z.dtype).lerp_(z.to(p.device), weight))
            group[_MODE] = to_train

    def eval(self) -> None:
        """Put the averaged point x into the params (for evaluation, checkpoints of the model)."""
        self._move(False)

    def train(self) -> None:
        """Put the gradient point y back into the params (before training steps)."""
        self._move(True)

    def step(self, closure=None):
        if not self.train_mode:
            raise RuntimeError("Schedule-Free optimizer is in eval mode (the params hold the average x): "
                               "call optimizer.train() before optimizer.step()")
        return super().step(closure)


@register_optimizer("schedule_free_sgd", summary="Schedule-Free SGD: averaging instead of a schedule (opt.train()/eval())",
                    reference=_REFERENCE)
class ScheduleFreeSGD(ScheduleFree):
    """Schedule-Free SGD, matching ``schedulefree.SGDScheduleFree`` (same arguments and defaults)."""

    def __init__(self, params, lr=1.0, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0, *,
                 maximize=False, nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, warmup_steps=warmup_steps, r=r,
                        weight_lr_power=weight_lr_power, maximize=maximize)
        super().__init__(params, add_decayed_weights(hp("weight_decay")), defaults, nonfinite=nonfinite,
                         state_dtype=state_dtype)


@register_optimizer("schedule_free_adamw", summary="Schedule-Free AdamW: averaging instead of a schedule (opt.train()/eval())",
                    reference=_REFERENCE)
class ScheduleFreeAdamW(ScheduleFree):
    """Schedule-Free AdamW, matching ``schedulefree.AdamWScheduleFree`` (same arguments and defaults;
    ``betas[0]`` is the interpolation beta, ``betas[1]`` the second-moment decay)."""

    def __init__(self, params, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, warmup_steps=0, r=0.0,
                 weight_lr_power=2.0, *, maximize=False, nonfinite="raise", state_dtype=None):
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            # one number would be taken as both the interpolation beta and the second-moment decay
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, warmup_steps=warmup_steps, r=r,
                        weight_lr_power=weight_lr_power, maximize=maximize)
        inner = chain(scale_by_rms(hp("betas"), hp("eps")), add_decayed_weights(hp("weight_decay")))
        super().__init__(params, inner, defaults, momentum_key="betas", nonfinite=nonfinite, state_dtype=state_dtype)


@torch.no_grad()
def recompute_batchnorm_statistics(model: torch.nn.Module, batches: Iterable, optimizer: ScheduleFree | None = None) -> None:
    """Recompute every batch-norm layer's running mean and variance at the current params.

    With a Schedule-Free ``optimizer`` it first switches to eval mode (the params become x, where the
    statistics are wanted) and leaves it there. The statistics are the plain average over ``batches``
    (each an input tensor, or a tuple whose first entry is the input); other layers (dropout) keep their
    mode, and the model's training flags are restored.
    """
    if optimizer is not None:
        optimizer.eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    try:
        for batch in batches:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        for m, (momentum, training) in zip(norms, saved):
            m.momentum = momentum
            m.train(training)
