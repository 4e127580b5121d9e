"""The composable core: transforms, chain, the torch.optim adapter and state accounting."""
from gradkit.core.accounting import state_bytes, tensor_bytes
from gradkit.core.context import StepContext
from gradkit.core.hyper import Hyper, hp
from gradkit.core.optimizer import NONFINITE_POLICIES, Optimizer
from gradkit.core.storage import StateStorage
from gradkit.core.transform import Chain, GradientTransform, chain

__all__ = [
    "Chain",
    "GradientTransform",
    "Hyper",
    "NONFINITE_POLICIES",
    "Optimizer",
    "StateStorage",
    "StepContext",
    "chain",
    "hp",
    "state_bytes",
    "tensor_bytes",
]
