"""GradES: a matrix whose gradient converged is frozen, its optimizer state freed, never updated again."""
import pytest
import torch

import gradkit
from gradkit.optim import GradES


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, 3))


def _batches(n):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)  # random labels: memorisation keeps some gradients large
    return [(x, y)] * n


@pytest.mark.parametrize("make", [lambda p: gradkit.optim.AdamW(p, lr=3e-2),
                                  lambda p: torch.optim.AdamW(p, lr=3e-2)])
def test_frees_state_and_never_updates_a_frozen_matrix_again(make):
    model = _model()
    opt = GradES(make(model.parameters()), tau=5e-3, grace=5, patience=3)
    params = list(model.parameters())
    snapshots, bytes_seen = {}, []
    for t, (x, y) in enumerate(_batches(36)):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        bytes_seen.append(gradkit.state_bytes(opt.optimizer))
        for k in opt.frozen_at:
            p = params[k]
            assert not p.requires_grad and p.grad is None and p not in opt.optimizer.state
            if k in snapshots:
                assert torch.equal(p.detach(), snapshots[k]), f"frozen param {k} moved at step {t}"
            else:
                snapshots[k] = p.detach().clone()
    assert 1 <= opt.frozen_count < 3, opt.frozen_at  # some matrices froze, not all
    assert all(params[k].dim() == 2 for k in opt.frozen_at)  # only matrices are tracked by default
    assert min(opt.frozen_at.values()) > 5  # not during the grace period
    # the state of each frozen matrix (two moments) is gone from the accounting
    frozen_elems = sum(params[k].numel() for k in opt.frozen_at)
    assert bytes_seen[4] - bytes_seen[-1] == 2 * 4 * frozen_elems


def test_patience_counts_consecutive_steps_below():
    w = torch.nn.Parameter(torch.ones(2, 2))
    opt = GradES(gradkit.optim.SGD([w], lr=0.1), tau=1.0, patience=3)
    for g in (0.5, 0.5, 2.0, 0.5, 0.5):  # the run of two is broken by 2.0
        w.grad = torch.full((2, 2), g)
        opt.step()
    assert opt.frozen_count == 0
    w.grad = torch.full((2, 2), 0.5)
    opt.step()
    assert opt.frozen_at == {0: 6}


def test_state_dict_round_trip_refreezes():
    model = _model()
    opt = GradES(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), tau=1e9, grace=1,
                 params=[model[2].weight])
    for x, y in _batches(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    saved = opt.state_dict()
    assert saved["grades"]["frozen_at"] == {2: 2}
    twin = _model()
    twin.load_state_dict(model.state_dict())
    other = GradES(torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9), tau=1e9, grace=1,
                   params=[twin[2].weight])
    other.load_state_dict(saved)
    assert not twin[2].weight.requires_grad and twin[2].weight not in other.optimizer.state


@pytest.mark.parametrize("kw, match", [({"tau": 0.0}, "tau"), ({"tau": 1.0, "grace": -1}, "grace"),
                                       ({"tau": 1.0, "patience": 0}, "patience"),
                                       ({"tau": 1.0, "params": [torch.nn.Parameter(torch.ones(2, 2))]}, "params")])
def test_rejects(kw, match):
    w = torch.nn.Parameter(torch.ones(2, 2))
    with pytest.raises(ValueError, match=match):
        GradES(torch.optim.SGD([w], lr=0.1), **kw)
