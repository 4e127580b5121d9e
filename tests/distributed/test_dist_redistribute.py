"""Owner-based redistribution (gradkit/core/redistribute.py): owners, the two collectives, state on owners.

The 30-step exactness of the whole-matrix methods under FSDP2 is in test_dist_status.py; here the
mechanism itself: the rows each rank holds, a cost-balanced and deterministic owner assignment, that
``gather`` gives each owner exactly the whole tensors and ``scatter`` gives each rank exactly its rows, the
bytes sent, and that the state lives on the owners only (the ranks' state bytes add up to one process's).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gradkit.core.redistribute import _cost, assign_owners, row_counts

from dist_harness import run_once

pytestmark = [pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available"),
              pytest.mark.filterwarnings("ignore::gradkit.grouping.RoutingWarning")]

SHAPES = [(5, 3), (7, 2), (1, 4), (4,), (12, 6), (2, 2, 2)]


@pytest.mark.parametrize("rows,world", [(5, 2), (5, 4), (1, 4), (0, 3), (12, 5)])
def test_row_counts_are_torch_chunks(rows, world):
    chunks = [c.numel() for c in torch.arange(rows).chunk(world)] if rows else []
    assert row_counts(rows, world) == chunks + [0] * (world - len(chunks))


def test_owners_balance_the_cost_and_are_deterministic():
    shapes = [(64, 64), (64, 16), (16, 64), (32, 32), (8, 8), (128, 4)]
    owners = assign_owners(shapes, 3)
    assert owners == assign_owners(shapes, 3)
    load = [sum(_cost(torch.Size(s)) for s, o in zip(shapes, owners) if o == r) for r in range(3)]
    # greedy on the costliest first: no rank exceeds the mean by more than the largest single cost
    assert max(load) - sum(load) / 3 <= max(_cost(torch.Size(s)) for s in shapes)
    assert set(owners) == {0, 1, 2}
    with pytest.raises(ValueError, match="world must be a positive int"):
        assign_owners(shapes, 0)


def _worker(rank, world_size):
    """The collectives' round trip and GaLore's state under FSDP2, in one run of the ranks."""
    return (_round_trip(world_size), _galore_state(world_size), _missing_gradient(world_size),
            {name: _from_identical_gradients(name, world_size) for name in SENSITIVE_METHODS})


def _round_trip(world_size):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from gradkit.core.redistribute import OwnerPlan

    mesh = init_device_mesh("cpu", (world_size,))
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(s, generator=g) for s in SHAPES]
    params = [torch.randn(s, generator=g) for s in SHAPES]
    dg = [distribute_tensor(t, mesh, [Shard(0)]) for t in grads]
    dp = [distribute_tensor(t, mesh, [Shard(0)]) for t in params]
    plan = OwnerPlan.of(dp)
    full_g, full_p = plan.gather([[t.to_local() for t in dg], [t.to_local() for t in dp]])
    gathered = all((torch.equal(full_g[i], grads[i]) and torch.equal(full_p[i], params[i])) if i in plan.mine
                   else (full_g[i] is None and full_p[i] is None) for i in range(len(SHAPES)))
    sent_gather = plan.sent_bytes
    rows = plan.scatter({i: full_p[i] * 2 for i in plan.mine}, dp[0].to_local())
    scattered = all(torch.equal(rows[i], 2 * t.to_local()) for i, t in enumerate(dp))
    return plan.owners, plan.mine, gathered, scattered, sent_gather, plan.sent_bytes - sent_gather


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    return run_once(tmp_path_factory, "redistribute", _worker, 2, timeout=120)


def test_gather_and_scatter_move_exactly_the_rows(two_ranks):
    world = 2
    results = [r[0] for r in two_ranks]
    owners = results[0][0]
    assert all(r[0] == owners for r in results), "the ranks disagree on the owners"
    assert sorted(i for r in results for i in r[1]) == list(range(len(SHAPES)))
    for rank, (_, mine, gathered, scattered, sent_gather, sent_scatter) in enumerate(results):
        assert gathered, f"rank {rank}: an owner's whole tensor differs from the original"
        assert scattered, f"rank {rank}: the rows sent back differ from this rank's rows"
        # what leaves this rank: its rows of the tensors others own, twice (gradient and param) ...
        rows_out = sum(row_counts(s[0], world)[rank] * torch.Size(s).numel() // s[0]
                       for s, o in zip(SHAPES, owners) if o != rank)
        assert sent_gather == 2 * rows_out * 4
        # ... and, from the owner, every other rank's rows of the tensors it owns
        rows_back = sum(torch.Size(s).numel() - row_counts(s[0], world)[rank] * torch.Size(s).numel() // s[0]
                        for s, o in zip(SHAPES, owners) if o == rank)
        assert sent_scatter == rows_back * 4
    # summed over the ranks: 3 m n (W - 1) / W entries per tensor on average; here exactly the rows off their owner
    total = sum(r[4] + r[5] for r in results) // 4
    off_owner = sum(torch.Size(s).numel() - row_counts(s[0], world)[o] * torch.Size(s).numel() // s[0]
                    for s, o in zip(SHAPES, owners))
    assert total == 3 * off_owner


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 5))


def _galore_state(world_size):
    from gradkit.registry import get_optimizer

    model = _model()
    if world_size > 1:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        fully_shard(model, mesh=init_device_mesh("cpu", (world_size,)))
    opt = get_optimizer("galore")(model.parameters(), lr=1e-2, rank=2, update_proj_gap=10)
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    keys = [sorted(opt.state[p]) for p in model.parameters()]
    return opt.state_bytes(), keys


def test_state_lives_on_the_owners(two_ranks):
    single, single_keys = _galore_state(1)
    results = [r[1] for r in two_ranks]
    assert sum(r[0] for r in results) == single, [r[0] for r in results]
    for j, want in enumerate(single_keys):
        # the owner of a sharded matrix holds its whole state, the other rank its step counter alone
        held = [r[1][j] for r in results]
        assert want in held and all(k in (want, ["step"]) for k in held), (j, held)


def _missing_gradient(world_size):
    """A param of an owner-stepped group without a gradient: refused before anything is written."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from gradkit.registry import get_optimizer

    model = _model()
    fully_shard(model, mesh=init_device_mesh("cpu", (world_size,)))
    opt = get_optimizer("galore")(model.named_parameters(), lr=1e-2, rank=2, update_proj_gap=10)
    model(torch.randn(4, 6)).square().mean().backward()
    model[2].bias.grad = None
    before = [p.detach().to_local().clone() for p in model.parameters()]
    try:
        opt.step()
        message = None
    except ValueError as err:
        message = str(err)
    unchanged = all(torch.equal(b, p.detach().to_local()) for b, p in zip(before, model.parameters()))
    return message, unchanged, len(opt.state)


def test_a_param_without_gradient_in_an_owner_stepped_group_is_refused(two_ranks):
    for rank, (message, unchanged, n_states) in enumerate(r[2] for r in two_ranks):
        assert message is not None and "'2.bias' has no gradient" in message, f"rank {rank}: {message}"
        assert unchanged and n_states == 0, f"rank {rank}: the refused step changed params or state"


# Methods that amplify a perturbation of the gradient: FSDP's reduce-scatter rounds the gradient differently
# from one process (~1e-7), which SOAP's and Shampoo's eigenbases of rank-deficient factors turn into ~1e-2 within
# a few steps (so does a single process given gradients perturbed by 1e-7), and Prodigy's and D-Adapt's step-size
# estimates (ratios of group sums) into 1e-5 to 1e-3. Their sharded step (on owners, or on local shards with the
# sums completed over the mesh) is checked from identical global gradients instead.
SENSITIVE_METHODS = {"soap": {"lr": 1e-2, "precondition_frequency": 3},
                      "shampoo": {"lr": 1e-2, "precondition_frequency": 3},
                      "prodigy": {"lr": 1.0}, "dadapt_adam": {"lr": 1.0}}


def _from_identical_gradients(name: str, world_size: int, steps: int = 8):
    """Params after ``steps`` steps with the same global gradients (drawn from a seed), sharded or not."""
    from gradkit.registry import get_optimizer

    model = _model()
    if world_size > 1:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        from torch.distributed.tensor import distribute_tensor

        fully_shard(model, mesh=init_device_mesh("cpu", (world_size,)))
    opt = get_optimizer(name)(model.parameters(), **SENSITIVE_METHODS[name])
    g = torch.Generator().manual_seed(2)
    for _ in range(steps):
        for p in model.parameters():
            grad = torch.randn(p.shape, generator=g)
            p.grad = distribute_tensor(grad, p.device_mesh, p.placements) if world_size > 1 else grad
        opt.step()
    return [p.detach().full_tensor() if world_size > 1 else p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", sorted(SENSITIVE_METHODS))
def test_sensitive_methods_sharded_equal_one_process_from_the_same_gradients(two_ranks, name):
    single = _from_identical_gradients(name, 1)
    for rank, result in enumerate(r[3][name] for r in two_ranks):
        for i, (got, want) in enumerate(zip(result, single)):
            err = float((got - want).abs().max() / want.abs().max())
            assert err <= 1e-5, f"{name}, rank {rank}, param {i}: relative difference {err:.2e}"
