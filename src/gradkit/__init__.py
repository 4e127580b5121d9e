"""gradkit: everything a PyTorch training loop does with gradients.

The top level holds the core types (``Optimizer``, ``chain``, ``GradientTransform``, ``hp``, ...) and
every gradient transform by its functional name (``scale_by_adam``, ``trace``, ``clip_by_global_norm``,
...), which is all a custom optimizer needs::

    opt = gradkit.Optimizer(model.parameters(),
                            gradkit.chain(gradkit.clip_by_global_norm(1.0), gradkit.scale_by_adam(),
                                          gradkit.scale_by_learning_rate()),
                            defaults={"lr": 1e-3})

Optimizers are in ``gradkit.optim``; transform classes, helpers and option sets in ``gradkit.transforms``.

Every name here, and every subpackage (``gradkit.optim``, ``.memory``, ``.lowrank``, ``.combine``,
``.inspect``, ``.explain``, ...), is imported on first use, so ``import gradkit`` costs nothing for what
a program does not touch (and ``gradkit --help`` does not import torch).
"""
import importlib

__version__ = "0.1.0"

_CORE = ("Chain", "GradientTransform", "Hyper", "Optimizer", "StepContext", "chain", "hp", "state_bytes")
# every functional transform name of gradkit.transforms (tests/test_public_api.py checks none is missing)
_TRANSFORMS = (
    "add_decayed_weights", "autoclip", "cautious", "clip_by_block_rms", "clip_by_global_norm", "clip_by_value",
    "decoupled_decay", "flip_sign", "heavy_ball", "mars_correction", "multi_momentum", "orthogonal_grad", "project_radial", "proximal_decay", "scale",
    "scale_by_adam", "scale_by_adamomentum", "scale_by_adan", "scale_by_ademamix", "scale_by_adopt", "scale_by_belief",
    "scale_by_dadapt_adam", "scale_by_diffgrad", "scale_by_dog", "scale_by_exadam", "scale_by_grams", "scale_by_gsnr",
    "scale_by_laprop", "scale_by_learning_rate", "scale_by_nesterov_adam", "scale_by_optimistic_amsgrad", "scale_by_prodigy", "scale_by_psgd_kron",
    "scale_by_rms", "scale_by_shampoo", "scale_by_soap", "scale_by_trust_region", "scale_by_udog", "schedule_free", "select_by_group",
    "sign_momentum", "skip_first_step", "trace",
)
_HOME = {**{name: "gradkit.core" for name in _CORE}, **{name: "gradkit.transforms" for name in _TRANSFORMS},
         "param_groups": "gradkit.grouping"}
_SUBMODULES = frozenset({"bench", "combine", "datasets", "distributed", "explain", "inspect", "lowrank", "memory",
                         "models", "optim", "registry", "spec", "transforms"})

__all__ = [*_CORE, "optim", "transforms", "param_groups", *_TRANSFORMS]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES | set(_HOME))
