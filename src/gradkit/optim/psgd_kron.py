"""PSGD Kron: momentum preconditioned by a Kronecker-factored preconditioner fitted with the PSGD criterion.

Li, "Preconditioned Stochastic Gradient Descent", arXiv:1512.04202; Li, "Black Box Lie Group Preconditioners
for SGD", arXiv:2211.04422; official code https://github.com/lixilinx/psgd_torch; arguments and defaults of
``kron-torch`` (https://github.com/evanatyourservice/kron_torch).

    u <- P m_hat, P = Q^T Q fitted on (V, m_hat) with the update probability; RMS-clipped to 1.1
                                                                              (scale_by_psgd_kron)
    p <- p - lr (u + wd p)       (the decay only for tensors with two or more dims)

``preconditioner_update_probability``: ``None`` anneals it (``prob_schedule``), a number fixes it.
``seed``: the probe vectors' streams (per tensor, in its state); ``None`` uses torch's global generator
as kron-torch does.
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.optimizer import Optimizer
from gradkit.core.transform import chain
from gradkit.registry import register_optimizer
from gradkit.transforms import flip_sign, scale_by_learning_rate
from gradkit.transforms.psgd_kron import scale_by_psgd_kron

__all__ = ["PSGDKron"]


@register_optimizer("psgd_kron", summary="PSGD Kron: Kronecker-factored preconditioner fitted by the PSGD criterion",
                    reference="Li, Preconditioned Stochastic Gradient Descent, arXiv:1512.04202; Li, Black Box Lie Group "
                              "Preconditioners for SGD, arXiv:2211.04422; https://github.com/lixilinx/psgd_torch")
class PSGDKron(Optimizer):
    """PSGD Kron, matching ``kron_torch.Kron`` (one param group)."""

    def __init__(self, params, lr=3e-4, b1=0.9, weight_decay=0.0, preconditioner_update_probability=None,
                 max_size_triangular=8192, min_ndim_triangular=2, memory_save_mode=None,
                 momentum_into_precond_update=True, precond_lr=0.1, precond_init_scale=1.0, merge_dims=True,
                 prob_schedule=(1.0, 0.03, 0.001, 500.0), seed=0, *, maximize=False, nonfinite="raise", state_dtype=None):
        defaults = dict(lr=lr, b1=b1, weight_decay=weight_decay,
                        preconditioner_update_probability=preconditioner_update_probability,
                        max_size_triangular=max_size_triangular, min_ndim_triangular=min_ndim_triangular,
                        memory_save_mode=memory_save_mode, momentum_into_precond_update=momentum_into_precond_update,
                        precond_lr=precond_lr, precond_init_scale=precond_init_scale, merge_dims=merge_dims,
                        prob_schedule=prob_schedule, seed=seed, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            scale_by_psgd_kron(hp("b1"), hp("weight_decay"), hp("preconditioner_update_probability"),
                               hp("max_size_triangular"), hp("min_ndim_triangular"), hp("memory_save_mode"),
                               hp("momentum_into_precond_update"), hp("precond_lr"), hp("precond_init_scale"),
                               hp("merge_dims"), hp("prob_schedule"), hp("seed")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, nonfinite=nonfinite, state_dtype=state_dtype)
