"""SOAP: Adam in the eigenbasis of Shampoo's Kronecker-factored preconditioner.

Vyas et al., "SOAP: Improving and Stabilizing Shampoo using Adam", ICLR 2025, arXiv:2409.11321; official
code https://github.com/nikhilvyas/SOAP.

    u <- Adam step in the eigenbasis of L_i = EMA(G_(i) G_(i)^T), basis refreshed every
         precondition_frequency steps                                        (scale_by_soap)
    p <- p (1 - lr wd) - lr u               (first step: statistics only, nothing moves)

Arguments and defaults are the official ones. See :mod:`gradkit.transforms.soap` for the deviations.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_learning_rate
from gradkit.transforms.adopt import skip_first_step
from gradkit.transforms.soap import scale_by_soap

__all__ = ["SOAP"]


@register_optimizer("soap", summary="SOAP: Adam in the eigenbasis of Shampoo's preconditioner",
                    reference="Vyas et al., SOAP: Improving and Stabilizing Shampoo using Adam, ICLR 2025, "
                              "arXiv:2409.11321; https://github.com/nikhilvyas/SOAP")
class SOAP(Optimizer):
    """SOAP, with the official arguments and defaults."""

    def __init__(self, params, lr=3e-3, betas=(0.95, 0.95), shampoo_beta=None, eps=1e-8, weight_decay=0.01,
                 precondition_frequency=10, max_precondition_dim=10000, precondition_1d=False, correct_bias=True, *,
                 maximize=False, nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, betas=betas, shampoo_beta=shampoo_beta, eps=eps, weight_decay=weight_decay,
                        precondition_frequency=precondition_frequency, max_precondition_dim=max_precondition_dim,
                        precondition_1d=precondition_1d, correct_bias=correct_bias, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            scale_by_soap(hp("betas"), hp("shampoo_beta"), hp("eps"), hp("precondition_frequency"),
                          hp("max_precondition_dim"), hp("precondition_1d"), hp("correct_bias")),
            add_decayed_weights(hp("weight_decay")),
            skip_first_step(),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
