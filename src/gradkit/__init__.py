"""gradkit: everything a PyTorch training loop does with gradients."""
from gradkit import optim, transforms
from gradkit.core import (
    Chain,
    GradientTransform,
    Hyper,
    Optimizer,
    StepContext,
    chain,
    hp,
    state_bytes,
)
from gradkit.transforms import *  # noqa: F401,F403  (the building blocks are public API)
from gradkit.transforms import __all__ as _transforms_all

__version__ = "0.1.0"
__all__ = ["Chain", "GradientTransform", "Hyper", "Optimizer", "StepContext", "chain", "hp", "optim", "state_bytes",
           "transforms", *_transforms_all]


# -- Subpackages on first use -------------------------------------------------------------------------
# ``gradkit.memory``, ``gradkit.lowrank``, ``gradkit.combine``, ``gradkit.inspect``, ``gradkit.explain``
# (and the other subpackages below) are imported when first touched, so ``import gradkit`` costs
# nothing for the ones a program does not use.
_LAZY_SUBMODULES = frozenset({"bench", "combine", "datasets", "explain", "inspect", "lowrank", "memory", "models",
                              "registry"})


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY_SUBMODULES)
