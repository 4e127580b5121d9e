"""gradkit.inspect with the data split over two gloo ranks equals one process on all of the data.

Rank 0 holds 13 examples (as two batches, 8 + 5) and rank 1 holds 11 (one batch), so the shares are
unequal and both the cached single-batch path and the multi-batch path of HessianOperator run. The
ranks seed their random generators differently: the estimates agree with the single-process ones
(seeded like rank 0) only because every probe is rank 0's.
"""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from gradkit import inspect

from dist_harness import run_on_ranks, run_once

TOL = 1e-5
N = 24
SPLIT = 13
LOSS = nn.CrossEntropyLoss()


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, 5, generator=g), torch.randint(0, 3, (N,), generator=g)


def _probe(size):
    return torch.randn(size, generator=torch.Generator().manual_seed(2))


def _estimates(model, data, seed, process_group=None, noise_batch=None, method="double_backward"):
    op = inspect.HessianOperator(model, LOSS, data, method=method, process_group=process_group)
    gen = lambda: torch.Generator().manual_seed(seed)  # noqa: E731
    loss, grad = op.loss_and_gradient()
    out = {
        "hvp": op.matvec(_probe(op.size)),
        "loss": torch.tensor(loss),
        "gradient": grad,
        "top_eigenvalue": inspect.top_eigenpairs(op, k=2, max_iter=30, generator=gen()).eigenvalues,
        "power_eigenvalue": inspect.top_eigenpairs(op, method="power", max_iter=50, generator=gen()).eigenvalues,
        "trace": torch.tensor(inspect.hutchinson_trace(op, num_samples=8, generator=gen()).trace),
        "density_nodes": inspect.spectral_density(op, num_iter=6, generator=gen()).nodes,
    }
    if noise_batch is not None:
        two = inspect.two_batch_noise_scale(model, LOSS, noise_batch, 4, process_group=process_group)
        per = inspect.per_example_noise_scale(model, LOSS, noise_batch, process_group=process_group)
        out["two_batch"] = torch.tensor([two.gradient_sq_norm, two.trace_covariance])
        out["per_example"] = torch.tensor([per.gradient_sq_norm, per.trace_covariance])
    return out


def _worker(rank, world_size):
    x, y = _data()
    if rank == 0:
        data = [(x[:8], y[:8]), (x[8:SPLIT], y[8:SPLIT])]
    else:
        data = (x[SPLIT:], y[SPLIT:])
    # The noise scales need shares that are multiples of the chunk size (4): 12 + 12.
    half = slice(0, 12) if rank == 0 else slice(12, N)
    results = _estimates(_model(), data, seed=rank * 1000, process_group=dist.group.WORLD, noise_batch=(x[half], y[half]))
    # The forward-over-reverse products on a single batch per rank.
    own = (x[:SPLIT], y[:SPLIT]) if rank == 0 else (x[SPLIT:], y[SPLIT:])
    op = inspect.HessianOperator(_model(), LOSS, own, method="func", process_group=dist.group.WORLD)
    results["hvp_func"] = op.matvec(_probe(op.size))
    return results


@pytest.fixture(scope="module")
def split_results(tmp_path_factory):
    return run_once(tmp_path_factory, "inspect-split", _worker, 2, timeout=180)


@pytest.fixture(scope="module")
def reference():
    x, y = _data()
    return _estimates(_model(), (x, y), seed=0, noise_batch=(x, y))


KEYS = ["hvp", "loss", "gradient", "top_eigenvalue", "power_eigenvalue", "trace", "density_nodes", "two_batch", "per_example"]


@pytest.mark.parametrize("key", KEYS)
def test_split_data_equals_full_batch(split_results, reference, key):
    want = reference[key]
    for rank, result in enumerate(split_results):
        err = float((result[key] - want).abs().max() / want.abs().max())
        assert err <= TOL, f"{key} on rank {rank}: relative difference {err:.2e} > {TOL}"


def test_func_products_equal_full_batch(split_results, reference):
    for result in split_results:
        err = float((result["hvp_func"] - reference["hvp"]).abs().max() / reference["hvp"].abs().max())
        assert err <= TOL


def test_the_shares_alone_differ_from_the_full_batch(reference):
    """Each rank's share on its own gives a clearly different top eigenvalue and trace, so the
    agreement above comes from the reduction over ranks."""
    x, y = _data()
    for share in (slice(0, SPLIT), slice(SPLIT, N)):
        local = _estimates(_model(), (x[share], y[share]), seed=0)
        for key in ("top_eigenvalue", "trace"):
            assert float((local[key] - reference[key]).abs().max() / reference[key].abs().max()) > 1e-2


def test_process_group_without_distributed_raises():
    x, y = _data()
    with pytest.raises(ValueError, match="process_group was given but torch.distributed is not initialised"):
        inspect.HessianOperator(_model(), LOSS, (x, y), process_group=object())


def _four_rank_worker(rank, world_size):
    """All four ranks (one of them without data), then two subgroups of two with their own data."""
    x, y = _data()
    shares = {0: [(x[:10], y[:10])], 1: [(x[10:13], y[10:13]), (x[13:17], y[13:17])], 2: [(x[17:], y[17:])], 3: []}
    world = _estimates(_model(), shares[rank], seed=rank, process_group=dist.group.WORLD)
    subgroup, _ = dist.new_subgroups(group_size=2)
    # Ranks {0, 1} split the first 12 examples, ranks {2, 3} the last 12, each 5 + 7.
    lo = 0 if rank < 2 else 12
    mine = slice(lo, lo + 5) if rank % 2 == 0 else slice(lo + 5, lo + 12)
    sub = _estimates(_model(), (x[mine], y[mine]), seed=rank, process_group=subgroup)
    return {"world": world, "sub": sub}


@pytest.mark.slow
def test_four_ranks_one_empty_and_subgroups():
    results = run_on_ranks(_four_rank_worker, 4, timeout=180)
    x, y = _data()
    full = _estimates(_model(), (x, y), seed=0)
    halves = [_estimates(_model(), (x[:12], y[:12]), seed=0), _estimates(_model(), (x[12:], y[12:]), seed=2)]
    for rank, result in enumerate(results):
        for key in ("hvp", "loss", "gradient", "top_eigenvalue", "trace"):
            for got, want in ((result["world"][key], full[key]), (result["sub"][key], halves[rank // 2][key])):
                err = float((got - want).abs().max() / want.abs().max())
                assert err <= TOL, f"{key} on rank {rank}: relative difference {err:.2e} > {TOL}"
