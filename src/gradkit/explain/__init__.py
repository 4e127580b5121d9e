"""Explanations: why did the model predict this, answered with gradients with respect to the input.

Every method has one call shape, ``method(model, inputs, target, **options) -> attributions`` of the
input's shape, batched over the inputs. ``target`` is ``None`` (the predicted class), an int, or one
class per input. Put the model in eval mode first.

Methods: ``saliency``, ``input_x_gradient``, ``integrated_gradients``, ``smoothgrad`` (wraps any
method), ``expected_gradients``, ``fullgrad``, ``igos``. Training with an attribution prior:
``attribution_prior``. Faithfulness: ``deletion_curve``, ``insertion_curve``,
``model_randomization``. Pictures: ``gradkit.explain.plot.plot_attributions``.
"""
from __future__ import annotations

from .attribution_prior import PRIORS, attribution_prior, sparsity_prior, total_variation_prior
from .deletion import Curve, area_under_curve, deletion_curve, insertion_curve
from .expected_gradients import expected_gradients
from .fullgrad import fullgrad, fullgrad_decomposition
from .igos import igos
from .input_x_gradient import input_x_gradient
from .integrated_gradients import PATH_METHODS, integrated_gradients, path_rule
from .methods import METHODS, get_method
from .randomization import RandomizationResult, model_randomization, spearman
from .saliency import saliency
from .smoothgrad import smoothgrad
from .moreaugrad import group_sparse_moreaugrad, moreaugrad, sparse_moreaugrad
from .normgrad import normgrad, normgrad_layer_maps
from .diffroar import DiffRoarResult, diffroar

__all__ = [
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "path_rule",
    "PATH_METHODS",
    "smoothgrad",
    "expected_gradients",
    "attribution_prior",
    "total_variation_prior",
    "sparsity_prior",
    "PRIORS",
    "fullgrad",
    "fullgrad_decomposition",
    "igos",
    "Curve",
    "deletion_curve",
    "insertion_curve",
    "area_under_curve",
    "RandomizationResult",
    "model_randomization",
    "spearman",
    "METHODS",
    "get_method",
    "moreaugrad",
    "sparse_moreaugrad",
    "group_sparse_moreaugrad",
    "normgrad",
    "normgrad_layer_maps",
    "diffroar",
    "DiffRoarResult",
]
