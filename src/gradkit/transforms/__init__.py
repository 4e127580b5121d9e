"""Building blocks: one idea per module, composed with ``gradkit.chain``.

Each transform is exported under its functional name (``scale_by_adam``, also at the top level of
``gradkit``) and its class (``ScaleByAdam``, for ``isinstance`` and subclassing), with the public helpers
and option sets of its module. Per-module internals stay in the module (``gradkit.transforms.radial``).
"""
from gradkit.transforms.adam import scale_by_adam, ScaleByAdam
from gradkit.transforms.adamomentum import scale_by_adamomentum, ScaleByAdaMomentum
from gradkit.transforms.adan import scale_by_adan, ScaleByAdan
from gradkit.transforms.ademamix import alpha_warmup, beta3_warmup, scale_by_ademamix, ScaleByAdEMAMix
from gradkit.transforms.autoclip import autoclip, AutoClip
from gradkit.transforms.belief import rectification, scale_by_belief, ScaleByBelief
from gradkit.transforms.clipping import (
    clip_by_block_rms,
    clip_by_global_norm,
    clip_by_value,
    ClipByBlockRMS,
    ClipByGlobalNorm,
    ClipByValue,
    global_norm,
)
from gradkit.transforms.decay import add_decayed_weights, AddDecayedWeights
from gradkit.transforms.decoupled_decay import decoupled_decay, DecoupledDecay
from gradkit.transforms.diffgrad import scale_by_diffgrad, ScaleByDiffGrad
from gradkit.transforms.exadam import dynamic_step_size, scale_by_exadam, ScaleByEXAdam
from gradkit.transforms.grams import EPS_PLACEMENTS, scale_by_grams, ScaleByGrams
from gradkit.transforms.gsnr import ESTIMATORS, gradient_snr, scale_by_gsnr, ScaleByGSNR
from gradkit.transforms.heavy_ball import heavy_ball, HeavyBall
from gradkit.transforms.momentum import trace, Trace
from gradkit.transforms.nesterov_adam import scale_by_nesterov_adam, ScaleByNesterovAdam
from gradkit.transforms.orthogonalization import (
    coefficient_schedule,
    MUON_COEFFICIENTS,
    newton_schulz,
    orthogonalize,
    SINGULAR_VALUE_BAND,
)
from gradkit.transforms.proximal_decay import proximal_decay, ProximalDecay
from gradkit.transforms.radial import project_radial, ProjectRadial
from gradkit.transforms.orthogonal_grad import orthogonal_grad, OrthogonalGrad
from gradkit.transforms.scale import (
    flip_sign,
    FlipSign,
    scale,
    Scale,
    scale_by_learning_rate,
    ScaleByLearningRate,
)
from gradkit.transforms.select import select_by_group, SelectByGroup
from gradkit.transforms.sign_momentum import sign_momentum, SignMomentum
from gradkit.transforms.trust_region import (
    NORMS,
    scale_by_trust_region,
    ScaleByTrustRegion,
    shape_factor,
    SHAPE_SCALES,
)
from gradkit.transforms.adopt import scale_by_adopt, ScaleByAdopt, skip_first_step, SkipFirstStep
from gradkit.transforms.cautious import cautious, Cautious, cautious_mask
from gradkit.transforms.dadapt import scale_by_dadapt_adam, ScaleByDAdaptAdam
from gradkit.transforms.laprop import scale_by_laprop, ScaleByLaProp
from gradkit.transforms.mars import mars_correction, MarsCorrection
from gradkit.transforms.prodigy import scale_by_prodigy, ScaleByProdigy
from gradkit.transforms.psgd_kron import MEMORY_SAVE_MODES, scale_by_psgd_kron, ScaleByPSGDKron
from gradkit.transforms.rms import scale_by_rms, ScaleByRMS
from gradkit.transforms.udog import scale_by_udog, ScaleByUDoG
from gradkit.transforms.dog import scale_by_dog, ScaleByDoG
from gradkit.transforms.schedule_free import schedule_free, ScheduleFreeTransform
from gradkit.transforms.shampoo import GRAFTINGS, scale_by_shampoo, ScaleByShampoo
from gradkit.transforms.soap import scale_by_soap, ScaleBySOAP
from gradkit.transforms.multi_momentum import multi_momentum, MultiMomentum
from gradkit.transforms.optimistic_amsgrad import PREDICTORS, rmpe, scale_by_optimistic_amsgrad, ScaleByOptimisticAMSGrad

__all__ = [
    "add_decayed_weights",
    "AddDecayedWeights",
    "alpha_warmup",
    "autoclip",
    "AutoClip",
    "beta3_warmup",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "clip_by_value",
    "ClipByBlockRMS",
    "ClipByGlobalNorm",
    "ClipByValue",
    "coefficient_schedule",
    "decoupled_decay",
    "DecoupledDecay",
    "dynamic_step_size",
    "EPS_PLACEMENTS",
    "ESTIMATORS",
    "flip_sign",
    "FlipSign",
    "global_norm",
    "gradient_snr",
    "heavy_ball",
    "HeavyBall",
    "MUON_COEFFICIENTS",
    "newton_schulz",
    "NORMS",
    "orthogonalize",
    "project_radial",
    "ProjectRadial",
    "proximal_decay",
    "ProximalDecay",
    "rectification",
    "scale",
    "Scale",
    "scale_by_adam",
    "scale_by_adamomentum",
    "scale_by_adan",
    "scale_by_ademamix",
    "scale_by_belief",
    "scale_by_diffgrad",
    "scale_by_exadam",
    "scale_by_grams",
    "scale_by_gsnr",
    "scale_by_learning_rate",
    "scale_by_nesterov_adam",
    "scale_by_trust_region",
    "ScaleByAdam",
    "ScaleByAdaMomentum",
    "ScaleByAdan",
    "ScaleByAdEMAMix",
    "ScaleByBelief",
    "ScaleByDiffGrad",
    "ScaleByEXAdam",
    "ScaleByGrams",
    "ScaleByGSNR",
    "ScaleByLearningRate",
    "ScaleByNesterovAdam",
    "ScaleByTrustRegion",
    "select_by_group",
    "SelectByGroup",
    "shape_factor",
    "SHAPE_SCALES",
    "sign_momentum",
    "SignMomentum",
    "SINGULAR_VALUE_BAND",
    "Trace",
    "trace",
    "cautious",
    "Cautious",
    "cautious_mask",
    "mars_correction",
    "MarsCorrection",
    "scale_by_adopt",
    "scale_by_dadapt_adam",
    "scale_by_laprop",
    "scale_by_prodigy",
    "ScaleByAdopt",
    "ScaleByDAdaptAdam",
    "ScaleByLaProp",
    "ScaleByProdigy",
    "scale_by_udog",
    "scale_by_dog",
    "ScaleByDoG",
    "ScaleByUDoG",
    "skip_first_step",
    "SkipFirstStep",
    "schedule_free",
    "scale_by_rms",
    "ScaleByRMS",
    "ScheduleFreeTransform",
    "scale_by_soap",
    "ScaleBySOAP",
    "GRAFTINGS",
    "scale_by_shampoo",
    "ScaleByShampoo",
    "MEMORY_SAVE_MODES",
    "scale_by_psgd_kron",
    "ScaleByPSGDKron",
    "orthogonal_grad",
    "OrthogonalGrad",
    "PREDICTORS",
    "rmpe",
    "scale_by_optimistic_amsgrad",
    "ScaleByOptimisticAMSGrad",
    "multi_momentum",
    "MultiMomentum",
]
