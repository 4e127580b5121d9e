"""Shampoo (Distributed Shampoo's single-process algorithm): blocked Kronecker-factored preconditioning,
grafted onto Adam's, AdaGrad's or SGD's per-block step size, with decoupled weight decay.

Gupta, Koren & Singer, "Shampoo: Preconditioned Stochastic Tensor Optimization", ICML 2018,
arXiv:1802.09568; Shi et al., "A Distributed Data-Parallel PyTorch Implementation of the Distributed
Shampoo Optimizer for Training Neural Networks At-Scale", arXiv:2309.06497; official code
https://github.com/facebookresearch/optimizers.

    u <- ||graft|| / ||S|| * S,   S = M_hat x_i (L_i_hat + eps I)^(-1/(2k))      (scale_by_shampoo)
    p <- p (1 - lr wd) - lr u

Defaults follow the official ``DistributedShampoo`` (lr=1e-2, betas=(0.9, 1.0), epsilon=1e-12,
max_preconditioner_dim=1024, precondition_frequency=1, AdaGrad grafting with eps 1e-10,
use_bias_correction=True, decoupled decay). ``grafting="none"``, ``betas=(0, 1)``,
``use_bias_correction=False`` and ``merge_dims=False`` give the original Shampoo of Gupta et al.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.shampoo import scale_by_shampoo

__all__ = ["Shampoo"]


@register_optimizer("shampoo", summary="Shampoo: blocked Kronecker-factored preconditioner with grafting (Distributed Shampoo)",
                    reference="Gupta et al., Shampoo, ICML 2018, arXiv:1802.09568; Shi et al., Distributed Shampoo, "
                              "arXiv:2309.06497; https://github.com/facebookresearch/optimizers")
class Shampoo(Optimizer):
    """Shampoo with the arguments of the official ``DistributedShampoo`` (grafting given by name)."""

    def __init__(self, params, lr=1e-2, betas=(0.9, 1.0), epsilon=1e-12, weight_decay=0.0, max_preconditioner_dim=1024,
                 precondition_frequency=1, start_preconditioning_step=-1, use_bias_correction=True, grafting="adagrad",
                 grafting_beta2=0.999, grafting_eps=1e-10, merge_dims=True, *, maximize=False, nonfinite="raise",
                 state_dtype=None):
        defaults = dict(lr=lr, betas=betas, epsilon=epsilon, weight_decay=weight_decay,
                        max_preconditioner_dim=max_preconditioner_dim, precondition_frequency=precondition_frequency,
                        start_preconditioning_step=start_preconditioning_step, use_bias_correction=use_bias_correction,
                        grafting=grafting, grafting_beta2=grafting_beta2, grafting_eps=grafting_eps,
                        merge_dims=merge_dims, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            scale_by_shampoo(hp("betas"), hp("epsilon"), hp("max_preconditioner_dim"), hp("precondition_frequency"),
                             hp("start_preconditioning_step"), hp("use_bias_correction"), hp("grafting"),
                             hp("grafting_beta2"), hp("grafting_eps"), hp("merge_dims")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
