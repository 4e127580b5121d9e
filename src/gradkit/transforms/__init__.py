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

# Grams, AdaMomentum, SGD-SaI, non-Euclidean trust-region (Muon), AutoClip, per-group selection
from gradkit.transforms.adamomentum import ScaleByAdaMomentum, scale_by_adamomentum
from gradkit.transforms.autoclip import AutoClip, autoclip
from gradkit.transforms.grams import ScaleByGrams, scale_by_grams
from gradkit.transforms.gsnr import ScaleByGSNR, scale_by_gsnr
from gradkit.transforms.orthogonalization import newton_schulz, orthogonalize
from gradkit.transforms.select import SelectByGroup, select_by_group
from gradkit.transforms.trust_region import ScaleByTrustRegion, scale_by_trust_region

__all__ += [
    "AutoClip",
    "ScaleByAdaMomentum",
    "ScaleByGSNR",
    "ScaleByGrams",
    "ScaleByTrustRegion",
    "SelectByGroup",
    "autoclip",
    "newton_schulz",
    "orthogonalize",
    "scale_by_adamomentum",
    "scale_by_grams",
    "scale_by_gsnr",
    "scale_by_trust_region",
    "select_by_group",
]
