"""PSGD Kron against ``kron-torch`` (the PyTorch port used by the frontier benchmarks)."""
from __future__ import annotations

import contextlib
import io

import pytest
import torch

from gradkit.optim import PSGDKron
from gradkit.transforms.psgd_kron import diagonal_dims, merged_shape, update_probability

from _frontier_support import seeded_run
from support import check_rejects, digits_batch, max_relative_difference, train

TOL = 1e-5


@pytest.mark.parametrize("kw", [
    dict(),
    dict(weight_decay=0.1, memory_save_mode="one_diag", preconditioner_update_probability=0.5, precond_lr=0.2),
    dict(b1=0.95, memory_save_mode="all_diag", momentum_into_precond_update=False, precond_init_scale=0.5),
])
def test_matches_kron_torch(kw):
    kron = pytest.importorskip("kron_torch", reason="parity needs kron-torch: pip install kron-torch")
    ours = seeded_run(lambda p: PSGDKron(p, lr=1e-3, seed=None, **kw))
    reference = seeded_run(lambda p: kron.Kron(p, lr=1e-3, **kw))
    assert max_relative_difference(ours, reference) <= TOL


def test_update_probability_schedule():
    assert update_probability(0, 1.0, 0.03, 0.001, 500) == 1.0
    assert update_probability(10_000, 1.0, 0.03, 0.001, 500) == pytest.approx(0.03)
    assert update_probability(1000, 1.0, 0.03, 0.001, 500) == pytest.approx(torch.exp(torch.tensor(-0.5)).item())


def test_preconditioner_updates_follow_the_probability():
    # probability 1/4: the counter reaches 1 / p on every 4th step, and only those steps change the factors
    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = PSGDKron([w], preconditioner_update_probability=0.25)
    changed = []
    for _ in range(8):
        w.grad = torch.randn(4, 3)
        before = opt.state[w]["psgd.factor0"].clone() if opt.state[w] else torch.eye(4)
        opt.step()
        changed.append(not torch.equal(before, opt.state[w]["psgd.factor0"]))
    assert changed == [False, False, False, True] * 2
    assert opt.group_states[0]["psgd"]["updates"] == 2


def test_shapes_and_factor_kinds():
    assert merged_shape([8, 6, 3, 3], True) == [144, 3]  # the pair of sides whose difference is smaller
    assert merged_shape([8, 6, 3, 3], False) == [8, 6, 3, 3]
    assert diagonal_dims([10], 8192, 2, None) == [True]
    assert diagonal_dims([10, 1], 8192, 2, None) == [False, True]
    assert diagonal_dims([10, 4], 8, 2, None) == [True, False]
    assert diagonal_dims([10, 4], 8192, 2, "one_diag") == [True, False]
    w, b = torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(5))
    opt = PSGDKron([w, b])
    w.grad, b.grad = torch.randn(5, 3), torch.randn(5)
    opt.step()
    assert opt.state[w]["psgd.factor0"].shape == (5, 5) and opt.state[b]["psgd.factor0"].shape == (5,)
    assert torch.equal(opt.state[w]["psgd.factor0"], torch.triu(opt.state[w]["psgd.factor0"]))


def test_seeded_probes_are_reproducible_and_independent_of_the_global_generator():
    def run(global_seed):
        torch.manual_seed(global_seed)
        w = torch.nn.Parameter(torch.ones(4, 3))
        opt = PSGDKron([w], lr=0.1, seed=7)
        for t in range(3):
            w.grad = torch.arange(12.0).reshape(4, 3) / (t + 1)
            opt.step()
        return w.detach()

    assert torch.equal(run(0), run(1))


@pytest.mark.parametrize("bad", [dict(seed=1.5), dict(memory_save_mode="some_diag"), dict(preconditioner_update_probability=0.0),
                                 dict(precond_lr=0.0), dict(b1=1.0), dict(prob_schedule=(1.0, 2.0, 0.001, 500))])
def test_bad_arguments(bad):
    check_rejects(PSGDKron, **bad)
