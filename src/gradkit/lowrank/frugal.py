"""FRUGAL: a state-full optimizer in a subspace, a state-free one in its complement.

Zmushko, Beznosikov, Takáč & Horváth, "FRUGAL: Memory-Efficient Optimization by Reducing State Overhead
for Scalable Training", ICML 2025, arXiv:2411.07837; official code https://github.com/philip-zmushko/FRUGAL.

Per projected parameter with gradient ``G`` and a subspace of density ``rho`` refreshed every ``T`` steps::

    R = P^T G                      (SVD / random basis, RandK coordinates, whole-parameter blocks)
    U = P * inner(R)               inner = AdamW (default), SGD with momentum or any gradkit transform
    C = G - P R                    the state-free part
    p <- p - lr * (U + free_scale * sign(C))     ("sgd": free_scale * C)      and decoupled weight decay

Embeddings, the head and norms stay fully state-full (``full_state``), as in the paper. When the subspace
changes the inner state is reset (``state_policy="reset"``, the paper's default) or projected. Departures:
the state-free learning rate is given as a scale of ``lr`` (``free_scale``); blockwise selection cycles
through the parameters in group order (the paper also offers random and descending orders); at density 1
a matrix's subspace is the whole space and the inner optimizer runs on the unprojected gradient, so
``rho=1`` is exactly the inner optimizer and ``rho=0`` exactly the state-free one; with the "reset" and
"project" policies the SVD projector takes the top singular vectors from the eigendecomposition of the small
Gram matrix (the same subspace, cheaper; see :class:`gradkit.lowrank.SVDProjector`).
"""
from __future__ import annotations

from gradkit.core.hyper import hp
from gradkit.core.transform import GradientTransform, chain
from gradkit.lowrank.groups import LowRankOptimizer
from gradkit.lowrank.split import project_split
from gradkit.registry import register_optimizer
from gradkit.transforms import add_decayed_weights, flip_sign, scale_by_adam, scale_by_learning_rate, trace
from gradkit.transforms._checks import non_negative

__all__ = ["FRUGAL", "inner_transform"]

INNER = ("adamw", "sgd")


def inner_transform(inner) -> GradientTransform:
    """The state-full rule: "adamw" (Adam moments), "sgd" (heavy-ball momentum) or a GradientTransform.

    Example:
        >>> type(inner_transform("adamw")).__name__, type(inner_transform("sgd")).__name__
        ('ScaleByAdam', 'Trace')
    """
    if isinstance(inner, GradientTransform):
        return inner
    if inner == "adamw":
        return scale_by_adam(hp("betas"), hp("eps"))
    if inner == "sgd":
        return trace(hp("momentum"), 0.0, False)
    raise ValueError(f"inner must be one of {INNER} or a GradientTransform, got {inner!r}")


@register_optimizer(
    "frugal", summary="FRUGAL: AdamW (or any transform) in a subspace of density rho, signSGD in the complement",
    reference="Zmushko, Beznosikov, Takac & Horvath, FRUGAL: Memory-Efficient Optimization by Reducing State Overhead "
              "for Scalable Training, ICML 2025, arXiv:2411.07837; https://github.com/philip-zmushko/FRUGAL")
class FRUGAL(LowRankOptimizer):
    """FRUGAL: ``inner`` (AdamW) on the gradient projected onto a subspace of density ``rho``, a state-free
    rule (signSGD) on the complement: ``p <- p - lr * (P inner(P^T G) + free_scale * sign(G - P P^T G))``.

    Args:
        lr, betas, eps, weight_decay: the inner AdamW's (decoupled decay).
        density: the fraction ``rho`` of each projected matrix (or of the group, blockwise) that is state-full.
        update_freq: steps between subspace refreshes ``T``.
        projector: ``"svd"``, ``"random"``, ``"random_seeded"`` (the random basis rebuilt from a seed each
            step instead of stored: same updates, no projection state), ``"randk"``, ``"dct"``, ``"block"`` or
            a ``Projector``.
        inner: the state-full rule: ``"adamw"``, ``"sgd"`` (momentum) or any gradkit transform.
        free: the state-free rule on the complement: ``"sign"``, ``"sgd"`` or ``"none"``.
        free_scale: the state-free rule's learning rate as a multiple of ``lr``.
        state_policy: ``"reset"`` (paper), ``"project"`` or ``"keep"`` the inner state when the subspace changes.
        momentum: the momentum of ``inner="sgd"``.
        full_state, seed: as :class:`gradkit.lowrank.GaLore`.
        maximize, nonfinite, state_dtype: as :class:`gradkit.optim.AdamW`.

    Example:
        >>> import torch, gradkit, gradkit.lowrank, gradkit.memory
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 2))
        >>> opt = gradkit.lowrank.FRUGAL(model.named_parameters(), lr=1e-3, density=0.25)
        >>> model(torch.randn(4, 64)).square().mean().backward(); opt.step()
        >>> opt.state_bytes(by="kind")
        {'counter': 0, 'moment': 8720, 'projection': 4096, 'rng': 0}
        >>> gradkit.memory.estimate(model, "adamw")  # what AdamW would keep
        34320
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, density=0.25,
                 update_freq=200, projector="svd", inner="adamw", free="sign", free_scale=1.0,
                 state_policy="reset", momentum=0.9, full_state=None, seed=0, maximize=False,
                 nonfinite="raise", state_dtype=None):
        if free not in ("sign", "sgd"):
            raise ValueError(f"free must be 'sign' or 'sgd', got {free!r}")
        non_negative(momentum, None, "momentum")  # read only by inner="sgd", but never accepted malformed
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, density=density,
                        update_freq=update_freq, free_scale=free_scale, state_policy=state_policy,
                        momentum=momentum, seed=seed, maximize=maximize)
        transform = chain(
            flip_sign(hp("maximize")),
            project_split(inner_transform(inner), projector, density=hp("density"), update_freq=hp("update_freq"),
                          state_policy=hp("state_policy"), complement=free, free_scale=hp("free_scale"),
                          seed=hp("seed")),
            add_decayed_weights(hp("weight_decay")),
            scale_by_learning_rate(hp("lr")),
        )
        super().__init__(params, transform, defaults, full_state=full_state, nonfinite=nonfinite,
                         state_dtype=state_dtype)
