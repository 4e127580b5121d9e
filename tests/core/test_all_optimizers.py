"""Every registered optimizer, with its default arguments, through the same contract."""
import copy
import pickle

import pytest
import torch

from gradkit.registry import get_optimizer, list_entries

from support import data, tiny_mlp, train

# These tests build the low-rank optimizers from unnamed parameters on purpose; the routing warning that
# gives is tested in tests/integrations/test_param_groups.py.
pytestmark = pytest.mark.filterwarnings("ignore::gradkit.grouping.RoutingWarning")

NAMES = [e.name for e in list_entries("optimizer")]


def make(name, params, **kwargs):
    return get_optimizer(name)(params, **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_a_paper_reference(name):
    (entry,) = [e for e in list_entries("optimizer") if e.name == name]
    assert entry.summary and entry.reference
    assert isinstance(make(name, tiny_mlp().parameters()), torch.optim.Optimizer)


@pytest.mark.parametrize("name", NAMES)
def test_reduces_the_loss(name):
    model = tiny_mlp()
    losses = train(model, make(name, model.parameters()), 30)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_continues_bit_identically(name):
    a = tiny_mlp()
    opt_a = make(name, a.parameters())
    train(a, opt_a, 4)
    b = copy.deepcopy(a)
    opt_b = make(name, b.parameters())
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    train(a, opt_a, 4)
    train(b, opt_b, 4)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("name", NAMES)
def test_deepcopy_and_pickle_keep_the_recipe(name):
    a = tiny_mlp()
    opt_a = make(name, a.parameters())
    train(a, opt_a, 4)
    b, opt_b = copy.deepcopy((a, opt_a))  # one memo: the copied optimizer holds the copied params
    assert opt_b.transform.signature() == opt_a.transform.signature()
    train(a, opt_a, 4)
    train(b, opt_b, 4)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    restored = pickle.loads(pickle.dumps(opt_a))
    assert restored.state_dict()["gradkit"] == opt_a.state_dict()["gradkit"]


@pytest.mark.parametrize("name", NAMES)
def test_lr_scheduler_drives_the_learning_rate(name):
    model = tiny_mlp()
    opt = make(name, model.parameters())
    base = [g["lr"] for g in opt.param_groups]
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    train(model, opt, 3, scheduler=sched)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([b / 8 for b in base])
    frozen = copy.deepcopy(model)
    for group in opt.param_groups:
        group["lr"] = 0.0
    x, y = data()
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    moved = [not torch.equal(p, q) for p, q in zip(model.parameters(), frozen.parameters())]
    assert not any(moved), "lr=0 must leave the params where they are"


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_params(name):
    model = tiny_mlp(dtype=torch.bfloat16)
    opt = make(name, model.parameters())
    train(model, opt, 3)
    assert all(p.dtype == torch.bfloat16 and torch.isfinite(p).all() for p in model.parameters())
    assert opt.state_bytes() > 0 or name in {"sgd"}


@pytest.mark.parametrize("name", NAMES)
def test_params_without_grad_keep_value_and_state(name):
    model = tiny_mlp()
    opt = make(name, model.parameters())
    train(model, opt, 2)
    frozen = model[2].weight
    before_value = frozen.detach().clone()
    before_state = copy.deepcopy(opt.state[frozen])
    x, y = data()
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    frozen.grad = None
    opt.step()
    assert torch.equal(frozen, before_value)
    after = opt.state[frozen]
    assert before_state.keys() == after.keys()
    assert all(torch.equal(v, after[k]) if isinstance(v, torch.Tensor) else v == after[k] for k, v in before_state.items())


@pytest.mark.parametrize("name", NAMES)
def test_negative_learning_rate_is_rejected(name):
    with pytest.raises(ValueError, match="lr"):
        make(name, tiny_mlp().parameters(), lr=-1.0)


@pytest.mark.parametrize("name", NAMES)
def test_named_parameters_are_accepted(name):
    model = tiny_mlp()
    opt = make(name, model.named_parameters())
    losses = train(model, opt, 5)
    assert losses[-1] < losses[0]
