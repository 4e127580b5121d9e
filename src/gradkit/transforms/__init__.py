"""Building blocks: one idea per module, composed with ``gradkit.chain``."""
from gradkit.transforms.adam import ScaleByAdam, scale_by_adam
from gradkit.transforms.clipping import (
    ClipByBlockRMS,
    ClipByGlobalNorm,
    ClipByValue,
    clip_by_block_rms,
    clip_by_global_norm,
    clip_by_value,
    global_norm,
)
from gradkit.transforms.decay import AddDecayedWeights, add_decayed_weights
from gradkit.transforms.momentum import Trace, trace
from gradkit.transforms.scale import FlipSign, Scale, ScaleByLearningRate, flip_sign, scale, scale_by_learning_rate

__all__ = [
    "AddDecayedWeights",
    "ClipByBlockRMS",
    "ClipByGlobalNorm",
    "ClipByValue",
    "FlipSign",
    "Scale",
    "ScaleByAdam",
    "ScaleByLearningRate",
    "Trace",
    "add_decayed_weights",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "clip_by_value",
    "flip_sign",
    "global_norm",
    "scale",
    "scale_by_adam",
    "scale_by_learning_rate",
    "trace",
]
