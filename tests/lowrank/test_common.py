"""Every low-rank recipe: registry, defaults on any model, state_dict resume, schedulers, dtypes, missing grads."""
from __future__ import annotations

import copy
import io

import pytest
import torch

import gradkit
import gradkit.memory
from gradkit.registry import get_optimizer, list_entries

from lowrank_helpers import Small, loss_of, train

# These tests build the low-rank optimizers from unnamed parameters on purpose; the routing warning that
# gives is tested in tests/integrations/test_param_groups.py.
pytestmark = pytest.mark.filterwarnings("ignore::gradkit.grouping.RoutingWarning")

NAMES = ["frugal", "galore", "fira", "svdfree", "dct", "subset_norm", "snsm"]
# small ranks and a short period so that subspace changes happen inside the tests
VARIANTS = [
    ("frugal", dict(update_freq=2)),
    ("frugal", dict(update_freq=2, projector="random", state_policy="project")),
    ("frugal", dict(update_freq=2, projector="random_seeded", state_policy="project")),
    ("frugal", dict(update_freq=2, projector="randk", inner="sgd")),
    ("frugal", dict(update_freq=2, projector="block", density=0.5)),
    ("frugal", dict(update_freq=2, projector="dct", free="sgd", free_scale=0.1)),
    ("galore", dict(rank=2, update_proj_gap=2)),
    ("fira", dict(rank=2, update_proj_gap=2)),
    ("svdfree", dict(rank=2, update_proj_gap=2)),
    ("subset_norm", {}),
    ("snsm", dict(rank=2, update_proj_gap=2)),
]
IDS = [f"{n}-{'-'.join(str(v) for v in kw.values())}" for n, kw in VARIANTS]


def test_registered_by_name_with_references():
    entries = {e.name: e for e in list_entries("optimizer")}
    for name in NAMES:
        assert name in entries and "arXiv" in entries[name].reference


@pytest.mark.parametrize("name", NAMES)
def test_defaults_work_on_unnamed_params_and_reduce_the_loss(name):
    torch.manual_seed(0)
    model = Small()
    opt = get_optimizer(name)(model.parameters(), lr=3e-3)
    losses = train(model, opt, 30)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name, kwargs", VARIANTS, ids=IDS)
def test_state_dict_round_trip_continues_identically(name, kwargs):
    torch.manual_seed(0)
    model = Small()
    opt = get_optimizer(name)(model.named_parameters(), lr=1e-2, **kwargs)
    train(model, opt, 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    twin = Small()
    twin_opt = get_optimizer(name)(twin.named_parameters(), lr=1e-2, **kwargs)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    twin.load_state_dict(saved["model"])
    twin_opt.load_state_dict(saved["opt"])
    train(model, opt, 4, start=3)  # crosses two subspace updates (steps 5 and 7)
    train(twin, twin_opt, 4, start=3)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert opt.state_bytes(by="key") == twin_opt.state_bytes(by="key")


@pytest.mark.parametrize("name, kwargs", VARIANTS[:5], ids=IDS[:5])
def test_in_memory_load_does_not_share_state_with_the_source(name, kwargs):
    torch.manual_seed(0)
    model = Small()
    opt = get_optimizer(name)(model.named_parameters(), lr=1e-2, **kwargs)
    train(model, opt, 3)
    twin = copy.deepcopy(model)
    twin_opt = get_optimizer(name)(twin.named_parameters(), lr=1e-2, **kwargs)
    twin_opt.load_state_dict(opt.state_dict())
    train(model, opt, 4, start=3)
    train(twin, twin_opt, 4, start=3)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_load_rejects_a_different_layout():
    model = Small()
    opt = get_optimizer("galore")(model.named_parameters(), rank=2)
    train(model, opt, 1)
    other = get_optimizer("galore")(Small().named_parameters(), rank=3)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(opt.state_dict())


@pytest.mark.parametrize("name, kwargs", VARIANTS, ids=IDS)
def test_lr_scheduler_drives_the_step(name, kwargs):
    torch.manual_seed(0)
    model = Small()
    opt = get_optimizer(name)(model.named_parameters(), lr=1e-2, **kwargs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.0 if s >= 2 else 1.0)
    train(model, opt, 2, scheduler=sched)
    frozen = [p.detach().clone() for p in model.parameters()]
    train(model, opt, 2, start=2, scheduler=sched)  # lr 0 and no weight decay: nothing moves
    for a, b in zip(frozen, model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name, kwargs", VARIANTS, ids=IDS)
def test_bfloat16_params_get_float32_state(name, kwargs):
    torch.manual_seed(0)
    model = Small().to(torch.bfloat16)
    extra = torch.nn.Parameter(torch.randn(7, 5, dtype=torch.float64))  # mixed dtypes in one optimizer
    params = [*model.named_parameters(), ("extra.weight", extra)]
    opt = get_optimizer(name)(params, lr=1e-2, **kwargs)
    x = torch.randint(0, 11, (4, 5))
    first = None
    for _ in range(3):
        opt.zero_grad()
        (model(x).float().square().mean() + extra.sin().sum()).backward()
        opt.step()
        first = first or opt.state_bytes()
    for p in [*model.parameters(), extra]:
        assert torch.isfinite(p).all()
    assert opt.state[extra]["step"] == 3 and extra.dtype == torch.float64
    for entries in opt.state.values():
        for key, value in entries.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                if torch.is_tensor(v) and v.is_floating_point() and key != "step":
                    assert v.dtype in (torch.float32, torch.float64), key
    assert gradkit.memory.estimate(params, name, lr=1e-2, **kwargs) == first


@pytest.mark.parametrize("name, kwargs", VARIANTS, ids=IDS)
def test_params_without_grads_are_skipped(name, kwargs):
    torch.manual_seed(0)
    model = Small()
    model.conv.weight.requires_grad_(False)
    opt = get_optimizer(name)(model.named_parameters(), lr=1e-2, **kwargs)
    before = model.conv.weight.detach().clone()
    train(model, opt, 3)
    assert torch.equal(before, model.conv.weight) and not opt.state[model.conv.weight]


def test_maximize_flips_the_direction():
    torch.manual_seed(0)
    a, b = Small(), Small()
    b.load_state_dict(a.state_dict())
    opt_a = get_optimizer("frugal")(a.parameters(), lr=1e-2, projector="randk")
    opt_b = get_optimizer("frugal")(b.parameters(), lr=1e-2, projector="randk", maximize=True)
    loss_of(a, 0).backward()
    (-loss_of(b, 0)).backward()
    opt_a.step()
    opt_b.step()
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)
