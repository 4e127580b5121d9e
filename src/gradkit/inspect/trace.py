"""Hessian trace by Hutchinson's estimator, with its standard error and a confidence interval.

M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
smoothing splines", Communications in Statistics - Simulation and Computation 19(2), 1990:
tr(H) = E[v^T H v] for any random v with E[v v^T] = I (Rademacher entries give the least
variance, 2 * sum_{i != j} H_ij^2). PyHessian (Yao et al., IEEE BigData 2020,
https://github.com/amirgholami/PyHessian) applies it to neural networks; it reports only the mean
and stops on a relative-change rule. Here the estimate comes with an error bar from the sample
variance of the m probes: standard error s / sqrt(m), and a two-sided interval
mean +- t_{(1+c)/2, m-1} * s / sqrt(m) at confidence c (Student t, which the central limit theorem
justifies for the sum of independent probes; the tests check its coverage in repeated trials).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import torch

from .hessian import as_operator

__all__ = ["TraceEstimate", "hutchinson_trace", "student_t_quantile"]

DISTRIBUTIONS = ("rademacher", "gaussian")


def student_t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom.

    Exact closed forms for df = 1, 2; otherwise the Cornish-Fisher expansion in 1/df about the
    normal quantile (Abramowitz & Stegun 26.7.5), accurate to about 1e-3 for df >= 4 at the
    usual confidence levels (more than enough for an error bar).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        a = 4 * p * (1 - p)
        return 2 * (p - 0.5) * math.sqrt(2 / a)
    z = NormalDist().inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


@dataclass
class TraceEstimate:
    """``trace`` (the sample mean), ``std_error``, the ``interval`` (low, high) at ``confidence``,
    the per-probe ``samples`` v^T H v, and ``num_hvps`` used."""

    trace: float
    std_error: float
    interval: tuple[float, float]
    confidence: float
    samples: torch.Tensor
    num_hvps: int

    def contains(self, value: float) -> bool:
        return self.interval[0] <= value <= self.interval[1]


def hutchinson_trace(operator, num_samples: int = 50, *, distribution: str = "rademacher", confidence: float = 0.95, generator: torch.Generator | None = None) -> TraceEstimate:
    """Estimate tr(H) from ``num_samples`` (>= 2) products with random probes."""
    op = as_operator(operator)
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2 (the error bar needs a sample variance), got {num_samples!r}")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    before = op.num_hvps
    samples = torch.empty(num_samples, dtype=torch.float64)
    for i in range(num_samples):
        if distribution == "rademacher":
            v = torch.randint(0, 2, (op.size,), generator=generator).to(op.dtype).mul_(2).sub_(1)
        else:
            v = torch.randn(op.size, generator=generator, dtype=op.dtype)
        v = op.agree(v.to(op.device))  # the same probe on every rank of a data-parallel operator
        samples[i] = float(torch.dot(v, op.matvec(v)))
    mean = float(samples.mean())
    std_error = float(samples.std(unbiased=True)) / math.sqrt(num_samples)
    half = student_t_quantile(0.5 + confidence / 2, num_samples - 1) * std_error
    return TraceEstimate(mean, std_error, (mean - half, mean + half), confidence, samples, op.num_hvps - before)
