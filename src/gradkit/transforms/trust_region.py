"""Non-Euclidean trust-region steps with momentum: Muon, signSGD with momentum, normalized SGD.

Kovalev, "Understanding Gradient Orthogonalization for Deep Learning via Non-Euclidean Trust-Region
Optimization", arXiv:2503.12645 (2025). The step is the trust-region step of radius ``lr`` in a
chosen norm, taken along the momentum::

    m_t = beta m_{t-1} + (1 - beta) g_t                  (zero-initialised moving average)
    d_t = (1 - beta) g_t + beta m_t   (nesterov)   or   d_t = m_t
    u_t = argmax_{||u|| <= 1} <d_t, u>                   (then the chain scales by -lr)

so that the step ``-lr u_t`` has norm exactly ``lr`` (before any shape scaling):

* ``norm="spectral"`` (Muon): ``u = U V^T`` of each tensor seen as a matrix (``d.reshape(d.shape[0], -1)``:
  conv weights are flattened; vectors are 1 x n matrices, for which this is ``d / ||d||_2``). It is
  computed by the batched quintic Newton-Schulz iteration of Muon's official code
  (https://github.com/KellerJordan/Muon), so the singular values of ``u`` lie in
  ``orthogonalization.SINGULAR_VALUE_BAND`` rather than at exactly 1. ``u`` is then multiplied by a
  shape factor: ``shape_scale="muon"`` (official code) ``sqrt(max(1, rows / cols))``;
  ``"moonlight"`` ``0.2 sqrt(max(rows, cols))`` (Liu et al., "Muon is Scalable for LLM Training",
  arXiv:2502.16982, which matches AdamW's update RMS); ``"none"`` 1. Rows and columns are those of the
  flattened matrix; Muon's official code takes the ratio from the last two dimensions of the
  unflattened tensor, which differs only for conv weights (there it gives 1 for square kernels, and so
  does the flattened ratio whenever out_channels <= in_channels * kh * kw).
* ``norm="linf"``: ``u = sign(d)`` (signSGD with momentum / Signum): every coordinate moves by ``lr``.
* ``norm="l2"``: ``u = d / ||d||_2`` with the norm over the whole param group (normalized SGD with
  momentum): the group's step has Euclidean norm ``lr``. An all-zero ``d`` gives a zero step.

Momentum follows Muon's official code (``lerp``, Nesterov form ``g.lerp(m, beta)``, default on);
``momentum=0`` takes the step along the gradient and keeps no state.
"""
from __future__ import annotations

import math

import torch

from gradkit.core.hyper import check_hyper, resolve
from gradkit.core.state import FIRST_MOMENT, WHOLE_MATRIX
from gradkit.core.transform import GradientTransform
from gradkit.registry import register_transform
from gradkit.transforms._checks import boolean, unit_interval
from gradkit.transforms.clipping import global_norm
from gradkit.transforms.orthogonalization import MUON_COEFFICIENTS, coefficient_schedule, orthogonalize

__all__ = ["scale_by_trust_region", "ScaleByTrustRegion", "NORMS", "SHAPE_SCALES", "shape_factor"]

NORMS = ("spectral", "linf", "l2")
SHAPE_SCALES = ("muon", "moonlight", "none")


def _matrix_shape(shape: torch.Size) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    return shape[0], math.prod(shape[1:])


def shape_factor(shape: torch.Size, rule: str) -> float:
    """The factor a spectral step of a tensor of this shape is multiplied by (``rule``: "muon",
    ``sqrt(max(1, rows / cols))``; "moonlight", ``0.2 sqrt(max(rows, cols))``; "none", 1).

    >>> shape_factor(torch.Size([64, 16]), "muon"), shape_factor(torch.Size([16, 64]), "muon")
    (2.0, 1.0)
    """
    rows, cols = _matrix_shape(shape)
    if rule == "muon":
        return max(1.0, rows / cols) ** 0.5
    if rule == "moonlight":
        return 0.2 * max(rows, cols) ** 0.5
    return 1.0


@register_transform(
    "scale_by_trust_region",
    summary="unit trust-region step along the momentum in a spectral (Muon), l-inf (sign) or l2 norm",
    reference="Kovalev, Understanding Gradient Orthogonalization for Deep Learning via Non-Euclidean Trust-Region "
              "Optimization, arXiv:2503.12645; https://github.com/KellerJordan/Muon",
)
class ScaleByTrustRegion(GradientTransform):
    """The unit trust-region step along the momentum in a chosen norm (Muon, signSGD, normalized SGD).

    Args:
        norm: "spectral" (Muon: ``U V^T`` by Newton-Schulz), "linf" (``sign``) or "l2" (group-normalized).
        momentum: the EMA rate (0: the gradient itself, no state).
        nesterov: step along ``(1 - beta) g + beta m`` (Muon's default).
        ns_steps, ns_coefficients, ns_dtype: the Newton-Schulz iteration (steps, (a, b, c) triples, dtype).
        shape_scale: "muon", "moonlight" or "none" (see :func:`shape_factor`).

    ``u_t = argmax_{||u|| <= 1} <d_t, u>`` with ``d_t`` the (Nesterov) momentum. Reference: Kovalev,
    arXiv:2503.12645; https://github.com/KellerJordan/Muon.

    >>> import torch, gradkit
    >>> w = torch.nn.Parameter(torch.zeros(3))
    >>> opt = gradkit.Optimizer([w], gradkit.chain(gradkit.scale_by_trust_region("linf", momentum=0.0),
    ...                                            gradkit.scale_by_learning_rate()), {"lr": 0.1})
    >>> w.grad = torch.tensor([3.0, -0.2, 0.0]); opt.step(); w.detach()
    tensor([-0.1000,  0.1000,  0.0000])
    """

    name = "trust_region"
    kind = WHOLE_MATRIX
    runs_on_dtensors = True  # exact through DTensor's implicit redistribution (tests/distributed/test_dist_status.py)

    @property
    def owner_steppable(self) -> bool:
        """Each tensor's step needs that tensor alone (core/redistribute.py), except the group-normalized "l2"."""
        return self.norm != "l2"
    state_kinds = {"momentum_buffer": FIRST_MOMENT}

    def __init__(self, norm="spectral", momentum=0.95, nesterov=True, ns_steps=5, ns_coefficients=MUON_COEFFICIENTS,
                 ns_dtype="auto", shape_scale="muon"):
        self.norm = norm
        self.momentum = momentum
        self.nesterov = nesterov
        self.ns_steps = ns_steps
        self.ns_coefficients = ns_coefficients
        self.ns_dtype = ns_dtype
        self.shape_scale = shape_scale

    def validate(self, group):
        check_hyper(self.norm, group, "norm", lambda x: x in NORMS, f"one of {NORMS}")
        unit_interval(self.momentum, group, "momentum")
        boolean(self.nesterov, group, "nesterov")
        check_hyper(self.ns_steps, group, "ns_steps", lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 1,
                    "an int >= 1")
        coefficients = check_hyper(self.ns_coefficients, group, "ns_coefficients", lambda x: len(x) > 0,
                                   "an (a, b, c) triple or a non-empty list of triples")
        try:
            coefficient_schedule(coefficients, 1)
        except (TypeError, ValueError):
            raise ValueError(f"ns_coefficients must be an (a, b, c) triple or a non-empty list of triples, "
                             f"got {coefficients!r}") from None
        check_hyper(self.ns_dtype, group, "ns_dtype",
                    lambda x: x is None or x == "auto" or (isinstance(x, torch.dtype) and x.is_floating_point),
                    "'auto', None or a floating-point torch.dtype")
        check_hyper(self.shape_scale, group, "shape_scale", lambda x: x in SHAPE_SCALES, f"one of {SHAPE_SCALES}")

    def init(self, params, ctx):
        if float(ctx.value(self.momentum)) == 0:
            return {}
        return {"momentum_buffer": [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]}

    def spans_params(self, group):
        return resolve(self.norm, group) == "l2"  # the l2 trust region is the whole group's norm

    def update(self, updates, state, params, ctx):
        beta = float(ctx.value(self.momentum))
        direction = updates
        if beta > 0:
            buffers = state["momentum_buffer"]
            torch._foreach_lerp_(buffers, updates, 1.0 - beta)
            if ctx.value(self.nesterov):
                direction = torch._foreach_lerp(updates, buffers, beta)
            else:
                direction = buffers
        norm = ctx.value(self.norm)
        if norm == "linf":
            return ctx.fresh(torch._foreach_sign(direction))
        if norm == "l2":
            scale = 1.0 / torch.clamp(global_norm(direction), min=torch.finfo(torch.float32).tiny)
            return ctx.fresh(torch._foreach_mul(direction, scale.to(direction[0].device)))
        return ctx.fresh(self._spectral(direction, ctx))

    def _spectral(self, direction, ctx):
        matrices = [d.reshape(_matrix_shape(d.shape)) for d in direction]
        results = orthogonalize(matrices, int(ctx.value(self.ns_steps)), ctx.value(self.ns_coefficients),
                                ctx.value(self.ns_dtype))
        out = [r.reshape(d.shape) for r, d in zip(results, direction)]
        rule = ctx.value(self.shape_scale)
        factors = [shape_factor(d.shape, rule) for d in direction]
        if any(f != 1.0 for f in factors):
            torch._foreach_mul_(out, factors)
        return out


scale_by_trust_region = ScaleByTrustRegion
