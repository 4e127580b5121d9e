"""DoG: parameter-free SGD, step size = distance from the initial point / root of the summed squared gradients.

Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size Schedule", ICML 2023,
arXiv:2302.12022; official code https://github.com/formll/dog (package ``dog-optimizer``).

    g <- g + wd x;   x <- x - lr r_t / sqrt(G_t) g          (see scale_by_dog for r_t and G_t)

Arguments and defaults are the official ``dog.DoG``'s (``init_eta`` aside). The paper pairs DoG with
iterate averaging for its best results; that is left to the caller.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.dog import scale_by_dog

__all__ = ["DoG"]


@register_optimizer("dog", summary="DoG: parameter-free SGD, distance over gradients (lr=1 by default)",
                    reference="Ivgi, Hinder & Carmon, DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size "
                              "Schedule, ICML 2023, arXiv:2302.12022; https://github.com/formll/dog")
class DoG(Optimizer):
    """DoG, matching ``dog.DoG`` (same arguments and defaults).

    Args:
        lr: a multiplier of the step size (the paper's ``c``); 1 by default, not to be tuned.
        reps_rel: the first step's length relative to ``1 + ||x_0||`` (1e-6; the paper suggests 1e-4 with
            batch normalisation).
        weight_decay: coupled L2 added to the gradient.
        eps: added to the first sum of squared gradients.
        maximize, nonfinite, state_dtype: as :class:`gradkit.optim.AdamW`.
    """

    def __init__(self, params, lr=1.0, reps_rel=1e-6, weight_decay=0.0, eps=1e-8, *, maximize=False,
                 nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, reps_rel=reps_rel, weight_decay=weight_decay, eps=eps, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_dog(hp("reps_rel"), hp("eps")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
