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
from gradkit.grouping import param_groups
from gradkit.transforms import *  # noqa: F401,F403  (the building blocks are public API)
from gradkit.transforms import __all__ as _transforms_all

__version__ = "0.1.0"
__all__ = ["Chain", "GradientTransform", "Hyper", "Optimizer", "StepContext", "chain", "hp", "optim", "state_bytes",
           "transforms", *_transforms_all, "param_groups"]
