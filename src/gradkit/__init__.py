"""gradkit: everything a PyTorch training loop does with gradients.

The top level holds the core types (``Optimizer``, ``chain``, ``GradientTransform``, ``hp``, ...) and
every gradient transform by its functional name (``scale_by_adam``, ``trace``, ``clip_by_global_norm``,
...), which is all a custom optimizer needs::

    opt = gradkit.Optimizer(model.parameters(),
                            gradkit.chain(gradkit.clip_by_global_norm(1.0), gradkit.scale_by_adam(),
                                          gradkit.scale_by_learning_rate()),
                            defaults={"lr": 1e-3})

Optimizers are in ``gradkit.optim``; transform classes, helpers and option sets in ``gradkit.transforms``.
"""
from gradkit import optim, transforms
from gradkit.core import Chain, GradientTransform, Hyper, Optimizer, StepContext, chain, hp, state_bytes
from gradkit.transforms import (
    add_decayed_weights,
    autoclip,
    clip_by_block_rms,
    clip_by_global_norm,
    clip_by_value,
    decoupled_decay,
    flip_sign,
    heavy_ball,
    project_radial,
    proximal_decay,
    scale,
    scale_by_adam,
    scale_by_adamomentum,
    scale_by_adan,
    scale_by_ademamix,
    scale_by_belief,
    scale_by_diffgrad,
    scale_by_exadam,
    scale_by_grams,
    scale_by_gsnr,
    scale_by_learning_rate,
    scale_by_nesterov_adam,
    scale_by_trust_region,
    select_by_group,
    sign_momentum,
    trace,
)
from gradkit.grouping import param_groups

__version__ = "0.1.0"

__all__ = [
    "Chain", "GradientTransform", "Hyper", "Optimizer", "StepContext", "chain", "hp", "optim", "state_bytes",
    "transforms", "param_groups",
    # every functional transform name of gradkit.transforms (tests/test_public_api.py checks none is missing)
    "add_decayed_weights", "autoclip", "clip_by_block_rms", "clip_by_global_norm", "clip_by_value",
    "decoupled_decay", "flip_sign", "heavy_ball", "project_radial", "proximal_decay", "scale", "scale_by_adam",
    "scale_by_adamomentum", "scale_by_adan", "scale_by_ademamix", "scale_by_belief", "scale_by_diffgrad",
    "scale_by_exadam", "scale_by_grams", "scale_by_gsnr", "scale_by_learning_rate", "scale_by_nesterov_adam",
    "scale_by_trust_region", "select_by_group", "sign_momentum", "trace",
]
