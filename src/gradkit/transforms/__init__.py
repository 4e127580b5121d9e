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
from gradkit.transforms.heavy_ball import HeavyBall, heavy_ball
from gradkit.transforms.nesterov_adam import ScaleByNesterovAdam, scale_by_nesterov_adam
from gradkit.transforms.radial import ProjectRadial, project_radial, radial_modes

__all__ += [
    "HeavyBall",
    "ProjectRadial",
    "ScaleByNesterovAdam",
    "heavy_ball",
    "project_radial",
    "radial_modes",
    "scale_by_nesterov_adam",
]
from gradkit.transforms.belief import ScaleByBelief, scale_by_belief
from gradkit.transforms.decoupled_decay import DecoupledDecay, decoupled_decay

__all__ += ["DecoupledDecay", "ScaleByBelief", "decoupled_decay", "scale_by_belief"]
from gradkit.transforms.adan import ScaleByAdan, scale_by_adan
from gradkit.transforms.proximal_decay import ProximalDecay, proximal_decay

__all__ += ["ProximalDecay", "ScaleByAdan", "proximal_decay", "scale_by_adan"]
from gradkit.transforms.ademamix import ScaleByAdEMAMix, scale_by_ademamix

__all__ += ["ScaleByAdEMAMix", "scale_by_ademamix"]
from gradkit.transforms.diffgrad import ScaleByDiffGrad, scale_by_diffgrad
from gradkit.transforms.exadam import ScaleByEXAdam, scale_by_exadam
from gradkit.transforms.sign_momentum import SignMomentum, sign_momentum

__all__ += ["ScaleByDiffGrad", "ScaleByEXAdam", "SignMomentum", "scale_by_diffgrad", "scale_by_exadam", "sign_momentum"]
