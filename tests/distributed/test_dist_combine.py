"""combine.backward under data parallelism equals one process on the concatenated batch.

Two gloo ranks each hold half of a 16-example batch and a DDP-wrapped copy of a small multi-output
model; they take three SGD steps on the combined gradient of three (or two) conflicting losses.
The reference takes the same steps in this process on the whole batch. The aggregators are not
linear, so this holds only if every objective's gradient is averaged over the ranks before it is
aggregated (and DDP's own gradient hooks do not average anything a second time).
"""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

import gradkit.distributed as gd
from gradkit import combine

from dist_harness import run_on_ranks, run_once

TOL = 1e-5
STEPS = 3
GLOBAL_BATCH = 16
# name -> (constructor kwargs, number of objectives, batched jacobian)
CASES = {
    "upgrad": ({}, 3, False),
    "pcgrad": ({"seed": 0}, 3, False),
    "orthogonal": ({}, 3, False),
    "gradnorm": ({"alpha": 1.5, "lr": 0.05}, 3, False),
    "bloop": ({"aux_weight": 0.5}, 2, False),
    "upgrad_batched": ({}, 3, True),
}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(GLOBAL_BATCH, 5, generator=g), torch.randn(GLOBAL_BATCH, 3, generator=g)


def _losses(out, targets, m):
    # Objective i fits output i and is pushed along output i + 1 by the examples' values of another
    # target; on this data the two ranks' shares conflict (negative cosines between objectives)
    # where the whole batch does not, so aggregating per rank and then averaging is far off. The
    # constant keeps the losses positive, which GradNorm needs.
    return [((out[:, i] - targets[:, i]) ** 2).mean() + 3.0 * (out[:, (i + 1) % 3] * targets[:, (i + 2) % 3]).mean()
            + 10.0 for i in range(m)]


def _aggregator(name):
    kwargs, m, batched = CASES[name]
    return combine.get_aggregator(name.removesuffix("_batched"), **kwargs), m, batched


def _train(name, forward_model, params, x, y, **backward_options):
    """Three steps; returns the first combined gradient and the final parameters."""
    aggregator, m, batched = _aggregator(name)
    opt = torch.optim.SGD(params, lr=0.05)
    first_grads = None
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        combine.backward(_losses(forward_model(x), y, m), params, aggregator, batched=batched, **backward_options)
        if first_grads is None:
            first_grads = [p.grad.detach().clone() for p in params]
        opt.step()
    return first_grads, [p.detach().clone() for p in params]


def _ddp_worker(rank, world_size, names):
    x, y = _data()
    share = gd.rank_slice(GLOBAL_BATCH, rank, world_size)
    out = {}
    for name in names:
        model = nn.parallel.DistributedDataParallel(_model())
        params = list(model.parameters())
        out[name] = _train(name, model, params, x[share], y[share], process_group=dist.group.WORLD)
    return out


def _uneven_worker(rank, world_size):
    # 16 examples split 11 / 5: the shares' gradients must be weighted by their sizes.
    x, y = _data()
    share = slice(0, 11) if rank == 0 else slice(11, GLOBAL_BATCH)
    model = _model()
    params = list(model.parameters())
    return _train("upgrad", model, params, x[share], y[share], process_group=dist.group.WORLD,
                  batch_size=share.stop - share.start)


def _refusals_worker(rank, world_size):
    """What must raise, on every rank alike, under an initialised two-rank group."""
    model = _model()
    x, y = _data()
    params = list(model.parameters())
    messages = {}
    try:
        combine.backward(_losses(model(x), y, 3), params, combine.UPGrad())
    except ValueError as err:
        messages["no_group"] = str(err)

    class RankBiased(combine.Sum):
        def aggregate(self, jacobian, context):
            return super().aggregate(jacobian, context) + rank

    try:
        combine.backward(_losses(model(x), y, 3), params, RankBiased(), process_group=dist.group.WORLD)
    except RuntimeError as err:
        messages["disagree"] = str(err)
    messages["grads_after_refusals"] = [p.grad for p in params]

    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (world_size,))
    sharded = nn.Parameter(distribute_tensor(torch.randn(4, 5), mesh, [Shard(0)]))
    try:
        combine.backward([(x[:, :5] * sharded.full_tensor()[0]).sum()], [sharded], combine.Mean(),
                         process_group=dist.group.WORLD)
    except ValueError as err:
        messages["dtensor"] = str(err)
    combine.backward(_losses(model(x), y, 3), params, combine.UPGrad(), process_group=gd.LOCAL)
    messages["local_allowed"] = all(p.grad is not None for p in params)

    # Gradients computed elsewhere: rank r holds r + 1 everywhere and r + 1 examples, so the
    # weighted mean is (1 * 1 + 2 * 2) / 3 = 5/3; the caller's tensor stays as it was.
    weight = nn.Parameter(torch.zeros(4))
    given = torch.full((2, 4), float(rank + 1))
    combine.backward_from_gradients(given, [weight], combine.Mean(), process_group=dist.group.WORLD,
                                    batch_size=rank + 1)
    messages["from_gradients"] = (weight.grad.clone(), given.clone())
    return messages


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    return run_once(tmp_path_factory, "combine-ddp", _ddp_worker, 2, list(CASES), timeout=180)


def _reference(name):
    model = _model()
    x, y = _data()
    return _train(name, model, list(model.parameters()), x, y)


def _assert_close_per_tensor(got, want, what):
    for i, (a, b) in enumerate(zip(got, want)):
        err = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
        assert err <= TOL, f"{what}: tensor {i} differs by {err:.2e} (relative), more than {TOL}"


@pytest.mark.parametrize("name", list(CASES))
def test_ddp_combined_gradient_equals_full_batch(ddp_results, name):
    want_grads, want_params = _reference(name)
    for rank, result in enumerate(ddp_results):
        got_grads, got_params = result[name]
        _assert_close_per_tensor(got_grads, want_grads, f"{name} rank {rank} first combined gradient")
        _assert_close_per_tensor(got_params, want_params, f"{name} rank {rank} parameters after {STEPS} steps")


def test_uneven_shares_weighted_by_batch_size():
    results = run_on_ranks(_uneven_worker, 2, timeout=120)
    want_grads, want_params = _reference("upgrad")
    for rank, (got_grads, got_params) in enumerate(results):
        _assert_close_per_tensor(got_grads, want_grads, f"rank {rank} first combined gradient")
        _assert_close_per_tensor(got_params, want_params, f"rank {rank} parameters")


def test_refusals_under_an_initialised_group():
    for rank, result in enumerate(run_on_ranks(_refusals_worker, 2, timeout=120)):
        assert "process_group must be chosen" in result["no_group"]
        assert "differs between the ranks" in result["disagree"]
        assert result["grads_after_refusals"] == [None] * 4  # nothing written by a refused call
        assert "params[0] (shape (4, 5)) is a sharded DTensor" in result["dtensor"]
        assert result["local_allowed"]
        combined, given = result["from_gradients"]
        torch.testing.assert_close(combined, torch.full((4,), 5 / 3))
        torch.testing.assert_close(given, torch.full((2, 4), float(rank + 1)))


def test_process_group_errors_without_distributed():
    model = _model()
    x, y = _data()
    params = list(model.parameters())
    with pytest.raises(ValueError, match="torch.distributed is not initialised"):
        combine.backward(_losses(model(x), y, 3), params, combine.UPGrad(), process_group=object())
    with pytest.raises(ValueError, match="batch_size .* needs a process_group"):
        combine.backward(_losses(model(x), y, 3), params, combine.UPGrad(), batch_size=8)
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("name", ["upgrad", "pcgrad", "orthogonal", "bloop"])
def test_the_problem_tells_the_two_orders_apart(name):
    """Aggregating each half and averaging (what DDP's hooks would do) is far from the full-batch result
    here, so the tests above would catch gradients averaged after aggregation instead of before."""
    x, y = _data()
    want = _reference(name)[0]
    averaged = None
    for share in (slice(0, GLOBAL_BATCH // 2), slice(GLOBAL_BATCH // 2, GLOBAL_BATCH)):
        model = _model()
        grads = _train(name, model, list(model.parameters()), x[share], y[share])[0]
        averaged = grads if averaged is None else [(a + b) / 2 for a, b in zip(averaged, grads)]
    worst = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(averaged, want))
    assert worst > 1e-2
