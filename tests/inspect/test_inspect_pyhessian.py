"""Parity with PyHessian (Yao et al., https://github.com/amirgholami/PyHessian) on one model and batch."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradkit.inspect import HessianOperator, hutchinson_trace, top_eigenpairs

pyhessian = pytest.importorskip("pyhessian", reason="PyHessian is the reference implementation for this parity test")


def _problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    g = torch.Generator().manual_seed(1)
    return model, (torch.randn(64, 8, generator=g), torch.randint(0, 4, (64,), generator=g))


def test_top_eigenvalue_and_trace_agree_with_pyhessian():
    model, (x, y) = _problem()
    # PyHessian defaults to CUDA, puts the model in eval mode and leaves graph-carrying .grad on
    # it; run it on CPU, on a copy, so that the model we measure is untouched.
    reference = pyhessian.hessian(copy.deepcopy(model), F.cross_entropy, data=(x, y), cuda=False)
    torch.manual_seed(2)
    ref_top, _ = reference.eigenvalues(maxIter=500, tol=1e-7, top_n=1)
    ref_samples = torch.tensor(reference.trace(maxIter=300, tol=0.0), dtype=torch.float64)

    op = HessianOperator(model.eval(), F.cross_entropy, (x, y))
    ours = top_eigenpairs(op, 1, tol=1e-6, max_iter=100, generator=torch.Generator().manual_seed(0))
    # Power iteration to a 1e-7 relative change and Lanczos to a 1e-6 residual: both accurate to ~1e-5.
    assert ours.eigenvalues[0].item() == pytest.approx(ref_top[0], rel=1e-4)

    trace = hutchinson_trace(op, 300, generator=torch.Generator().manual_seed(0))
    ref_se = float(ref_samples.std()) / math.sqrt(ref_samples.numel())
    # Two independent unbiased estimates: their difference has standard error sqrt(se1^2 + se2^2).
    combined = math.hypot(trace.std_error, ref_se)
    assert abs(trace.trace - float(ref_samples.mean())) <= 4 * combined, (trace.trace, float(ref_samples.mean()), combined)
    # And the exact trace lies within the stated interval of ours at 99.9%.
    exact = _exact_trace(model, x, y)
    assert abs(trace.trace - exact) <= 4 * trace.std_error


def _exact_trace(model, x, y):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(v):
        params = {n: part.view(s) for n, part, s in zip(names, v.split([s.numel() for s in shapes]), shapes)}
        return F.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

    return float(torch.trace(torch.autograd.functional.hessian(loss_of, flat)))
