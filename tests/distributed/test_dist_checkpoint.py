"""torch.distributed.checkpoint (DCP) with gradkit optimizers, on gloo ranks in child processes (each run
has a hard timeout).

- One rank: ``get_optimizer_state_dict``/``set_optimizer_state_dict`` (sharded and ``full_state_dict``)
  and ``dcp.save``/``dcp.load`` round-trip every registered optimizer's whole state, group-level state
  included: training continues exactly as if never interrupted.
- Resharding: two FSDP2 ranks write a checkpoint at step 15; one process without FSDP (and, ``slow``,
  four FSDP2 ranks) loads it and its step 30 equals the uninterrupted two-rank run's.
"""
from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from dist_harness import run_on_ranks

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

TIMEOUT = 120.0
RESHARD_TOL = 1e-5


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


def _train(model, opt, steps, x, y):
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()


def _gap(a: nn.Module, b: nn.Module) -> float:
    return max(float((p - q).norm() / q.norm().clamp_min(1e-12)) for p, q in zip(a.parameters(), b.parameters()))


# -- one rank: every optimizer ------------------------------------------------------------------------


def _cases():
    from gradkit.registry import list_entries

    cases = [(e.name, {}) for e in list_entries("optimizer")]
    # a dtype hyperparameter (DCP's full_state_dict refuses dtype values); FRUGAL's block state, whose
    # per-param lists change length as the active block moves
    return cases + [("muon", {"ns_dtype": torch.float32}), ("frugal", {"projector": "block", "update_freq": 3})]


def _round_trips(rank, world_size, root):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_optimizer_state_dict,
                                                         set_optimizer_state_dict)
    from gradkit.registry import get_optimizer

    x, y = _data()
    results = []
    for index, (name, kwargs) in enumerate(_cases()):
        for full in (False, True):
            make = lambda model: get_optimizer(name)(model.named_parameters(), **kwargs)  # noqa: E731
            if full and name == "sgd" and not kwargs:
                # plain SGD keeps no tensor state, and DCP's full_state_dict load needs one tensor to learn
                # the device from ("Expected device to be set", torch.optim.SGD alike): checked with momentum
                make = lambda model: get_optimizer("sgd")(model.named_parameters(), lr=0.1, momentum=0.9)  # noqa: E731
            options = StateDictOptions(full_state_dict=full)
            a = _model()
            opt_a = make(a)
            _train(a, opt_a, 4, x, y)
            opt_a.skipped_steps = 2
            # get/set in memory
            b = copy.deepcopy(a)
            opt_b = make(b)
            set_optimizer_state_dict(b, opt_b, get_optimizer_state_dict(a, opt_a, options=options), options=options)
            same_meta = (str(opt_b.group_states) == str(opt_a.group_states)
                         and opt_b.skipped_steps == opt_a.skipped_steps)
            # through files
            path = os.path.join(root, f"{index}-{full}")
            dcp.save({"optim": get_optimizer_state_dict(a, opt_a, options=options)}, checkpoint_id=path)
            c = copy.deepcopy(a)
            opt_c = make(c)
            target = {"optim": get_optimizer_state_dict(c, opt_c, options=options)}
            dcp.load(target, checkpoint_id=path)
            set_optimizer_state_dict(c, opt_c, target["optim"], options=options)
            same_meta = same_meta and str(opt_c.group_states) == str(opt_a.group_states)
            for model, opt in ((a, opt_a), (b, opt_b), (c, opt_c)):
                _train(model, opt, 4, x, y)
            results.append((name, str(kwargs), full, same_meta, _gap(b, a), _gap(c, a)))
    return results, _zero_round_trips()


def _zero_round_trips():
    """ZeroRedundancyOptimizer on this one rank: its consolidated state_dict round-trip, or its refusal."""
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from gradkit.registry import get_optimizer, list_entries

    x, y = _data()
    out = {}
    for entry in list_entries("optimizer"):
        cls = type(get_optimizer(entry.name)(_model().parameters()))
        a = _model()
        try:
            zero_a = ZeroRedundancyOptimizer(a.parameters(), optimizer_class=cls)
        except AssertionError as error:
            out[entry.name] = str(error)
            continue
        _train(a, zero_a, 3, x, y)
        zero_a.consolidate_state_dict(0)
        sd = copy.deepcopy(zero_a.state_dict())  # torch's state_dict shares the live state tensors
        b = copy.deepcopy(a)
        zero_b = ZeroRedundancyOptimizer(b.parameters(), optimizer_class=cls)
        zero_b.load_state_dict(sd)
        _train(a, zero_a, 3, x, y)
        _train(b, zero_b, 3, x, y)
        out[entry.name] = _gap(b, a)
    return out


@pytest.fixture(scope="module")
def round_trips(tmp_path_factory):
    (results,) = run_on_ranks(_round_trips, 1, str(tmp_path_factory.mktemp("dcp")), timeout=TIMEOUT)
    return results


def test_every_optimizer_round_trips_through_dcp(round_trips):
    round_trips = round_trips[0]
    assert len(round_trips) == 2 * len(_cases())
    bad = [r for r in round_trips if not (r[3] and r[4] == 0.0 and r[5] == 0.0)]
    assert not bad, f"(name, kwargs, full_state_dict, group state kept, gap after get/set, gap after save/load): {bad}"


# -- resharding: FSDP2 on two ranks writes, one process reads ------------------------------------------
# label -> (registered optimizer, keyword arguments)
RESHARD_OPTIMIZERS = {
    "adamw": ("adamw", {"lr": 1e-2}), "lion": ("lion", {"lr": 1e-3}), "adam": ("adam", {"lr": 1e-2, "amsgrad": True}),
    # whole-matrix methods: their state lives on each matrix's owner rank (core/redistribute.py)
    "galore": ("galore", {"lr": 1e-2, "rank": 2, "update_proj_gap": 10}),
    "frugal": ("frugal", {"lr": 1e-2, "density": 0.5, "update_freq": 10, "projector": "random"}),
    # the basis rebuilt from a seed kept in state: the checkpoint carries the seeds (int64), not the matrices
    "frugal_random_seeded": ("frugal", {"lr": 1e-2, "density": 0.5, "update_freq": 10, "projector": "random_seeded"}),
    "muon": ("muon", {"lr": 0.02, "ns_dtype": torch.float32})}


def _fsdp_write(rank, world_size, root):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from gradkit.registry import get_optimizer

    mesh = init_device_mesh("cpu", (world_size,))
    x, y = _data()
    share = slice(rank * len(x) // world_size, (rank + 1) * len(x) // world_size)
    out = {}
    for label, (name, kwargs) in RESHARD_OPTIMIZERS.items():
        model = _model()
        for layer in (model[0], model[2], model):
            fully_shard(layer, mesh=mesh)
        opt = get_optimizer(name)(model.parameters(), **kwargs)
        _train(model, opt, 15, x[share], y[share])
        dcp.save({"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)},
                 checkpoint_id=os.path.join(root, label))
        _train(model, opt, 15, x[share], y[share])
        out[label] = [p.full_tensor() for p in model.parameters()]
    return out


def _fsdp_read(rank, world_size, root):
    """The two-rank checkpoint read by ``world_size`` FSDP2 ranks, continued to step 30."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict, get_optimizer_state_dict,
                                                         set_model_state_dict, set_optimizer_state_dict)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from gradkit.registry import get_optimizer

    mesh = init_device_mesh("cpu", (world_size,))
    x, y = _data()
    share = slice(rank * len(x) // world_size, (rank + 1) * len(x) // world_size)
    out = {}
    for label, (name, kwargs) in RESHARD_OPTIMIZERS.items():
        torch.manual_seed(5)  # other weights than the checkpoint's: the load must bring them
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
        for layer in (model[0], model[2], model):
            fully_shard(layer, mesh=mesh)
        opt = get_optimizer(name)(model.parameters(), **kwargs)
        target = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
        dcp.load(target, checkpoint_id=os.path.join(root, label))
        set_model_state_dict(model, target["model"])
        set_optimizer_state_dict(model, opt, target["optim"])
        steps = {s["step"] for s in opt.state.values()}
        _train(model, opt, 15, x[share], y[share])
        out[label] = ([p.full_tensor() for p in model.parameters()], steps)
    return out


def _single_read(rank, world_size, root):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict, get_optimizer_state_dict,
                                                         set_model_state_dict, set_optimizer_state_dict)
    from gradkit.registry import get_optimizer

    x, y = _data()
    out = {}
    for label, (name, kwargs) in RESHARD_OPTIMIZERS.items():
        torch.manual_seed(5)  # other weights than the checkpoint's: the load must bring them
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
        opt = get_optimizer(name)(model.parameters(), **kwargs)
        target = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
        dcp.load(target, checkpoint_id=os.path.join(root, label))
        set_model_state_dict(model, target["model"])
        set_optimizer_state_dict(model, opt, target["optim"])
        steps = {s["step"] for s in opt.state.values()}
        _train(model, opt, 15, x, y)
        out[label] = ([p.detach().clone() for p in model.parameters()], steps)
    return out


@pytest.fixture(scope="module")
def two_rank_checkpoint(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fsdp2"))
    return root, run_on_ranks(_fsdp_write, 2, root, timeout=TIMEOUT)[0]


def _check_continued(read, written):
    for label in RESHARD_OPTIMIZERS:
        params, steps = read[label]
        assert steps == {15}, label
        gaps = [float((p.detach() - q.detach()).norm() / q.detach().norm()) for p, q in zip(params, written[label])]
        assert max(gaps) <= RESHARD_TOL, (label, gaps)


def test_a_two_rank_fsdp2_checkpoint_continues_in_one_process(two_rank_checkpoint):
    root, written = two_rank_checkpoint
    (read,) = run_on_ranks(_single_read, 1, root, timeout=TIMEOUT)
    _check_continued(read, written)


@pytest.mark.slow
def test_a_two_rank_fsdp2_checkpoint_continues_on_four_ranks(two_rank_checkpoint):
    # the last layer's 3 rows do not divide among 4 ranks: uneven shards
    root, written = two_rank_checkpoint
    read = run_on_ranks(_fsdp_read, 4, root, timeout=TIMEOUT)[0]
    _check_continued(read, written)


# the optimizers that split their params into groups at construction, which ZeroRedundancyOptimizer refuses
SPLITS_GROUPS = {"dct", "fira", "frugal", "galore", "muon", "snsm", "svdfree"}
KEEPS_GROUP_STATE = {"dadapt_adam", "dog", "prodigy", "schedule_free_adamw", "schedule_free_sgd", "udog"}


def test_zero_redundancy_optimizer_round_trips_or_refuses(round_trips):
    zero = round_trips[1]
    refused = {name for name, result in zero.items() if isinstance(result, str)}
    assert refused == SPLITS_GROUPS
    assert all("Mismatch between number of source and destination parameter groups" in zero[name] for name in refused)
    gaps = {name: gap for name, gap in zero.items() if name not in refused}
    # ZeRO rebuilds the local optimizer's state from per-parameter entries only, so these optimizers'
    # group-level state (step-size estimates, Schedule-Free's averaging weights) restarts after a load:
    # a known gap (docs/distributed.md), held here so that a fix shows up.
    assert {name for name, gap in gaps.items() if gap != 0.0} == KEEPS_GROUP_STATE, gaps
