"""L-GreCo's DDP communication hook on two gloo ranks: the ranks agree, the chosen levels meet the budget,
training converges, and fewer bytes are sent than uncompressed and than uniform PowerSGD."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from dist_harness import run_once

STEPS = 80


def _train(rank, world_size, mode):
    from gradkit.comm import LGreCo, lgreco_hook
    from gradkit.datasets import digits

    data = digits("train")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    ddp = DDP(model)
    state = None
    if mode != "none":
        state = LGreCo(model, ranks=(1, 2, 4, 8, 16), default_rank=4, adaptive=(mode == "lgreco"),
                       warmup_steps=10, update_every=50)
        ddp.register_comm_hook(state, lgreco_hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(STEPS):
        idx = torch.randint(0, len(data), (128,), generator=gen)[rank::world_size]  # this rank's half
        loss = nn.functional.cross_entropy(ddp(data.inputs[idx]), data.targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    with torch.no_grad():
        full = nn.functional.cross_entropy(model(data.inputs), data.targets).item()
    return {"losses": losses, "full_loss": full, "params": flat,
            "bytes": state.bytes_sent if state else sum(p.numel() * 4 for p in model.parameters()) * STEPS,
            "selection": state.selection if state else None, "levels": dict(state.levels) if state else None}


def _worker(rank, world_size):
    return {mode: _train(rank, world_size, mode) for mode in ("none", "uniform", "lgreco")}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_once(tmp_path_factory, "lgreco", _worker, 2, timeout=120)


def test_ranks_end_with_the_same_parameters(results):
    for mode in ("none", "uniform", "lgreco"):
        torch.testing.assert_close(results[0][mode]["params"], results[1][mode]["params"], rtol=0, atol=1e-6)


def test_chosen_levels_meet_the_error_budget(results):
    sel = results[0]["lgreco"]["selection"]
    assert sel is not None and results[1]["lgreco"]["levels"] == results[0]["lgreco"]["levels"]
    total = sum(sel["errors"][i][k] for i, k in enumerate(sel["chosen"]))
    assert total <= sel["budget"]
    assert sel["size"] <= sel["uniform_size"]
    assert set(sel["ranks"]) <= {1, 2, 4, 8, 16}


def test_training_converges_and_sends_fewer_bytes(results):
    r = results[0]
    for mode in ("none", "uniform", "lgreco"):
        first, last = sum(r[mode]["losses"][:5]) / 5, sum(r[mode]["losses"][-10:]) / 10
        assert last < 0.3 * first, mode
        assert r[mode]["full_loss"] < 0.5
    assert r["lgreco"]["bytes"] < 0.5 * r["none"]["bytes"]
    assert r["lgreco"]["bytes"] <= r["uniform"]["bytes"]
