"""FRUGAL: limits rho=1 / rho=0, state policies, parameter selection, argument checks."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gradkit
from gradkit.lowrank import FRUGAL, project_split, split_param_groups

from lowrank_helpers import Small, train

# These tests build the low-rank optimizers from unnamed parameters on purpose; the routing warning that
# gives is tested in tests/integrations/test_param_groups.py.
pytestmark = pytest.mark.filterwarnings("ignore::gradkit.grouping.RoutingWarning")

PROJECTORS = ["svd", "random", "random_seeded", "randk", "block", "dct"]


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("projector", PROJECTORS)
def test_density_one_is_exactly_adamw(projector):
    torch.manual_seed(0)
    a, b = Small(), Small()
    b.load_state_dict(a.state_dict())
    train(a, gradkit.optim.AdamW(a.parameters(), lr=1e-2, weight_decay=0.1), 6)
    opt = FRUGAL(b.named_parameters(), lr=1e-2, weight_decay=0.1, density=1.0, projector=projector, update_freq=2)
    train(b, opt, 6)
    for x, y in zip(_params(a), _params(b)):
        assert torch.equal(x, y)


def test_density_one_with_sgd_inner_is_exactly_sgd_momentum():
    torch.manual_seed(0)
    a, b = Small(), Small()
    b.load_state_dict(a.state_dict())
    train(a, gradkit.optim.SGD(a.parameters(), lr=1e-2, momentum=0.9), 5)
    train(b, FRUGAL(b.parameters(), lr=1e-2, density=1.0, inner="sgd", momentum=0.9, projector="randk"), 5)
    for x, y in zip(_params(a), _params(b)):
        assert torch.equal(x, y)


@pytest.mark.parametrize("projector", PROJECTORS)
@pytest.mark.parametrize("free", ["sign", "sgd"])
def test_density_zero_is_exactly_the_state_free_rule(projector, free):
    torch.manual_seed(0)
    model = Small(bias=False)
    opt = FRUGAL(model.named_parameters(), lr=1e-2, density=0.0, projector=projector, free=free, free_scale=0.5,
                 full_state=lambda name, p: False)
    for step in range(3):
        before = _params(model)
        opt.zero_grad()
        from lowrank_helpers import loss_of
        loss_of(model, step).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
        for p0, g, p in zip(before, grads, model.parameters()):
            direction = 0.5 * (g.sign() if free == "sign" else g)
            assert torch.equal(p.detach(), p0.add(direction, alpha=-1e-2))
    assert opt.state_bytes() == 0  # no tensor state at all: only int step counters


def test_state_free_rule_is_sign_of_the_complement():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(10, 4))
    t = project_split(gradkit.scale_by_adam(), "svd", rank=2, update_freq=10, state_policy="reset", complement="sign",
                      project=True)
    opt = gradkit.Optimizer([w], gradkit.chain(t, gradkit.scale_by_learning_rate()), {"lr": 1.0})
    w.grad = torch.randn(10, 4)
    before = w.detach().clone()
    opt.step()
    q = opt.state[w]["lowrank.proj.matrix"]  # right projection: 2 x 4
    g = w.grad
    low = g @ q.T
    adam = low / (low.abs() + 1e-8)  # first Adam step: m_hat / sqrt(v_hat) = sign-like
    expected = adam @ q + torch.sign(g - low @ q)
    torch.testing.assert_close(before - w.detach(), expected, rtol=1e-5, atol=1e-6)


def test_reset_policy_zeroes_state_when_the_subspace_changes():
    torch.manual_seed(0)
    model = Small()
    opt = FRUGAL(model.parameters(), lr=1e-3, density=0.5, projector="random", update_freq=3, state_policy="reset")
    train(model, opt, 3)
    up = model.up.weight
    assert opt.state[up]["lowrank.inner_step"] == 3
    train(model, opt, 1, start=3)  # step 4 refits: inner state restarts
    assert opt.state[up]["lowrank.inner_step"] == 1
    exp_avg = opt.state[up]["lowrank.inner.adam.exp_avg"]
    low = model.up.weight.grad @ opt.state[up]["lowrank.proj.matrix"].T
    torch.testing.assert_close(exp_avg, 0.1 * low)  # one step of the EMA from zero


def test_project_policy_carries_randk_state_on_shared_coordinates():
    torch.manual_seed(0)
    model = Small()
    opt = FRUGAL(model.parameters(), lr=1e-3, density=0.5, projector="randk", update_freq=2, state_policy="project")
    train(model, opt, 2)
    p = model.up.weight
    old_idx = opt.state[p]["lowrank.proj.indices"].clone()
    old_sq = opt.state[p]["lowrank.inner.adam.exp_avg_sq"].clone()
    train(model, opt, 1, start=2)
    new_idx = opt.state[p]["lowrank.proj.indices"]
    new_sq = opt.state[p]["lowrank.inner.adam.exp_avg_sq"]
    assert not torch.equal(old_idx, new_idx)
    g = p.grad.reshape(-1)[new_idx]
    carried = torch.zeros(p.numel())
    carried[old_idx] = old_sq
    torch.testing.assert_close(new_sq, 0.999 * carried[new_idx] + 0.001 * g * g)
    assert opt.state[p]["lowrank.inner_step"] == 3  # projected state continues its step count


def test_keep_policy_leaves_state_untouched_at_refit():
    torch.manual_seed(0)
    model = Small()
    opt = FRUGAL(model.parameters(), lr=1e-3, density=0.5, projector="svd", update_freq=2, state_policy="keep")
    train(model, opt, 3)
    assert opt.state[model.up.weight]["lowrank.inner_step"] == 3


def test_block_projector_cycles_and_frees_state():
    torch.manual_seed(0)
    model = Small(bias=False)
    opt = FRUGAL(model.named_parameters(), lr=1e-3, density=0.5, projector="block", update_freq=1,
                 full_state=lambda n, p: False)
    params = list(model.parameters())
    seen = []
    for step in range(4):
        train(model, opt, 1, start=step)
        active = [i for i, p in enumerate(params) if opt.state[p]["lowrank.block.adam.exp_avg"]]
        seen.append(active)
    # sizes 88, 96, 72, 72, 66 (total 394): consecutive blocks closest to half of it, cycling
    assert seen == [[0, 1], [2, 3, 4], [0, 1], [2, 3, 4]]
    moments = opt.state_bytes(by="kind")["moment"]
    assert moments == sum(2 * params[i].numel() * 4 for i in seen[-1])


def test_full_state_by_name_pattern_and_predicate():
    model = Small()
    groups = split_param_groups(model.named_parameters())
    projected = {n for g in groups if g["project"] for n, _ in g["params"]}
    assert projected == {"up.weight", "down.weight", "conv.weight"}
    groups = split_param_groups(model.named_parameters(), full_state=r"^down")
    projected = {n for g in groups if g["project"] for n, _ in g["params"]}
    assert projected == {"embed.weight", "up.weight", "conv.weight", "head.weight"}
    groups = split_param_groups(model.parameters(), full_state=lambda name, p: p.shape[0] == 12)
    assert [p.shape for g in groups if not g["project"] for p in g["params"]][0] == (12, 8)
    opt = FRUGAL(model.named_parameters(), lr=1e-3)
    train(model, opt, 1)
    assert "lowrank.proj.matrix" not in opt.state[model.embed.weight]
    assert opt.state[model.embed.weight]["lowrank.inner.adam.exp_avg"].shape == model.embed.weight.shape
    assert opt.state[model.up.weight]["lowrank.inner.adam.exp_avg"].shape == (12, 2)  # rho * min(12, 8) = 2


def test_param_groups_keep_their_overrides():
    model = Small()
    opt = FRUGAL([{"params": list(model.up.parameters()), "lr": 0.5}, {"params": list(model.down.parameters())}],
                 lr=1e-3, density=0.5)
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == [1e-3, 1e-3, 0.5, 0.5]  # each group split into projected + full (the bias)


@pytest.mark.parametrize("kwargs, match", [
    (dict(density=1.5), "density"), (dict(update_freq=0), "update_freq"), (dict(state_policy="zero"), "state_policy"),
    (dict(projector="qr"), "projector"), (dict(inner="lion"), "inner"), (dict(free="adam"), "free"),
    (dict(free_scale=-1.0), "free_scale"), (dict(full_state=3), "full_state"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    model = Small()
    with pytest.raises((ValueError, TypeError), match=match):
        FRUGAL(model.parameters(), **kwargs)


def test_bad_group_override_leaves_optimizer_untouched():
    model = Small()
    opt = FRUGAL(model.parameters(), lr=1e-3)
    train(model, opt, 1)
    before = {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[model.up.weight].items()}
    n = len(opt.param_groups)
    with pytest.raises(ValueError, match="density"):
        opt.add_param_group({"params": [nn.Parameter(torch.randn(3, 3))], "density": 2.0})
    assert len(opt.param_groups) == n
    after = opt.state[model.up.weight]
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], v) if torch.is_tensor(v) else before[k] == v for k, v in after.items())


def test_any_gradkit_transform_can_be_the_state_full_rule():
    torch.manual_seed(0)
    model = Small()
    inner = gradkit.chain(gradkit.clip_by_value(-0.5, 0.5), gradkit.trace(0.8))
    opt = FRUGAL(model.named_parameters(), lr=1e-2, density=0.5, inner=inner, projector="randk")
    losses = train(model, opt, 20)
    assert losses[-1] < losses[0]
    st = opt.state[model.up.weight]
    assert st["lowrank.inner.momentum.momentum_buffer"].shape == (48,)  # half of the 96 coordinates
    assert opt.state_bytes(by="kind")["index"] == 8 * (48 + 36 + 36)


@pytest.mark.parametrize("policy", ["reset", "project"])
@pytest.mark.parametrize("state_dtype", [None, ("int8", 256, 0)])
def test_seeded_random_projector_is_random_without_its_matrices(policy, state_dtype):
    # the same updates as projector="random" (bit for bit, across subspace refreshes), with only an int64
    # seed triple per projected matrix in place of the float32 basis; a run resumed from its state_dict
    # at a step between refreshes continues identically
    runs = {}
    for projector in ("random", "random_seeded"):
        torch.manual_seed(0)
        model = Small()
        opt = FRUGAL(model.named_parameters(), lr=1e-2, density=0.5, projector=projector, update_freq=3,
                     state_policy=policy, state_dtype=state_dtype)
        train(model, opt, 4)
        runs[projector] = (model, opt)
    (model_r, opt_r), (model_s, opt_s) = runs["random"], runs["random_seeded"]
    twin = Small()
    twin.load_state_dict(model_s.state_dict())
    twin_opt = FRUGAL(twin.named_parameters(), lr=1e-2, density=0.5, projector="random_seeded", update_freq=3,
                      state_policy=policy, state_dtype=state_dtype)
    twin_opt.load_state_dict(opt_s.state_dict())
    for model, opt in ((model_r, opt_r), (model_s, opt_s), (twin, twin_opt)):
        train(model, opt, 4, start=4)
    for a, b, c in zip(model_r.parameters(), model_s.parameters(), twin.parameters()):
        assert torch.equal(a, b) and torch.equal(b, c)
    kinds_r, kinds_s = opt_r.state_bytes(by="kind"), opt_s.state_bytes(by="kind")
    projected = [p for p in model_s.parameters() if "lowrank.proj.basis_seed" in opt_s.state[p]]
    assert len(projected) == 3 and "projection" not in kinds_s  # up, down and conv: seeds only
    assert kinds_s["rng"] == 24 * len(projected) and kinds_s["moment"] == kinds_r["moment"]
    assert opt_s.state_bytes() == opt_r.state_bytes() - kinds_r["projection"] + 24 * len(projected)
    assert gradkit.memory.estimate(twin, "frugal", density=0.5, projector="random_seeded", update_freq=3,
                                   state_policy=policy, state_dtype=state_dtype) == twin_opt.state_bytes()
