"""Inspection of training from gradients and Hessian-vector products.

Curvature (top eigenpairs by Lanczos or power iteration, Hutchinson trace with an error bar,
spectral density by stochastic Lanczos quadrature), the gradient's overlap with the top Hessian
eigenspace, the gradient noise scale, per-layer gradient norms, update ratios and the effective
step size of scale-invariant weights, sharpness against 2 / lr, and an ``Inspector`` that a
training loop calls every N steps. Nothing here changes parameters, ``.grad`` or batch-norm
statistics.
"""
from __future__ import annotations

from .density import SpectralDensity, spectral_density
from .eigen import EigenResult, LanczosResult, lanczos, top_eigenpairs
from .gradient_flow import block_gradient_norms, distance_profile, input_gradient_map, plot_gradient_flow
from .hessian import HessianOperator, LinearOperator, MatrixOperator, as_operator, hessian_vector_product
from .inspector import Inspector
from .layers import WeightSnapshot, gradient_norms, scale_invariant_parameters, weight_norms
from .noise import NoiseScaleEstimate, NoiseScaleTracker, noise_scale_from_norms, per_example_noise_scale, two_batch_noise_scale
from .plots import load_log, plot_density, plot_log, plot_quantity, plot_runs
from .sharpness import SharpnessTracker, stability_threshold
from .subspace import OverlapResult, gradient_subspace_overlap, subspace_overlap
from .trace import TraceEstimate, hutchinson_trace, student_t_quantile
from .coherence import CoherenceResult, coherence, coherence_from_gradients
from .gradsign import gradsign, kendall_tau
from .similarity import canonical_correlations, flatten_positions, linear_cka, svcca
from .starvation import FeatureStrengths, feature_strengths
from .softmax_collapse import SoftmaxCollapse, softmax_collapse

__all__ = [
    "HessianOperator", "LinearOperator", "MatrixOperator", "as_operator", "hessian_vector_product",
    "top_eigenpairs", "lanczos", "EigenResult", "LanczosResult",
    "hutchinson_trace", "TraceEstimate", "student_t_quantile",
    "spectral_density", "SpectralDensity",
    "subspace_overlap", "gradient_subspace_overlap", "OverlapResult",
    "noise_scale_from_norms", "two_batch_noise_scale", "per_example_noise_scale", "NoiseScaleEstimate", "NoiseScaleTracker",
    "gradient_norms", "weight_norms", "WeightSnapshot", "scale_invariant_parameters",
    "SharpnessTracker", "stability_threshold",
    "Inspector",
    "input_gradient_map", "distance_profile", "block_gradient_norms", "plot_gradient_flow",
    "load_log", "plot_log", "plot_quantity", "plot_runs", "plot_density",
    "coherence", "coherence_from_gradients", "CoherenceResult",
    "gradsign", "kendall_tau",
    "svcca", "linear_cka", "canonical_correlations", "flatten_positions",
    "feature_strengths", "FeatureStrengths",
    "softmax_collapse", "SoftmaxCollapse",
]
