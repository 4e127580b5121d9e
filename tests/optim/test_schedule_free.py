"""Schedule-Free SGD and AdamW against the official ``schedulefree`` package, and the train/eval swap."""
from __future__ import annotations

import copy

import pytest
import torch

from gradkit import chain, hp
from gradkit.optim import ScheduleFree, ScheduleFreeAdamW, ScheduleFreeSGD, recompute_batchnorm_statistics
from gradkit.transforms import add_decayed_weights, scale_by_adam

from _frontier_support import cnn_parity, smooth_cnn
from support import check_rejects, check_state_bytes, digits_batch, parity, smooth_net, train

TOL = 1e-5


def _official():
    return pytest.importorskip("schedulefree", reason="parity needs the official package: pip install schedulefree")


def _official_train_mode(name, **kw):
    def make(params):
        opt = getattr(_official(), name)(params, **kw)
        opt.train()
        return opt
    return make


@pytest.mark.parametrize("kw", [dict(lr=0.05), dict(lr=0.05, weight_decay=0.01, warmup_steps=10, r=0.5,
                                                    weight_lr_power=1.0, momentum=0.8)])
def test_sgd_matches_official(kw):
    assert cnn_parity(lambda p: ScheduleFreeSGD(p, **kw), _official_train_mode("SGDScheduleFree", **kw)) <= TOL


@pytest.mark.parametrize("kw, steps", [
    (dict(lr=1e-3, warmup_steps=10), 50),
    (dict(lr=1e-3, weight_decay=0.01, warmup_steps=10, betas=(0.95, 0.99), r=1.0), 50),
    (dict(lr=1e-3), 50),
])
def test_adamw_matches_official(kw, steps):
    assert cnn_parity(lambda p: ScheduleFreeAdamW(p, **kw), _official_train_mode("AdamWScheduleFree", **kw),
                      steps) <= TOL


def test_eval_point_matches_official_and_train_restores():
    x, y = digits_batch(512, image=True)
    a = smooth_cnn()
    b = copy.deepcopy(a)
    ours = ScheduleFreeAdamW(a.parameters(), lr=1e-3, warmup_steps=5)
    official = _official_train_mode("AdamWScheduleFree", lr=1e-3, warmup_steps=5)(b.parameters())
    train(a, ours, 20, [(x, y)])
    train(b, official, 20, [(x, y)])
    at_y = [p.detach().clone() for p in a.parameters()]
    ours.eval()
    official.eval()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), at_y))
    ours.train()
    for p, q in zip(a.parameters(), at_y):
        torch.testing.assert_close(p.detach(), q, rtol=1e-5, atol=1e-6)


def test_state_dict_records_the_mode_and_step_refuses_eval_mode():
    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = ScheduleFreeSGD([w], lr=0.1)
    for _ in range(3):
        w.grad = torch.randn(4, 3)
        opt.step()
    opt.eval()
    saved = copy.deepcopy(opt.state_dict())
    assert saved["param_groups"][0]["train_mode"] is False
    before = (w.detach().clone(), copy.deepcopy(opt.state[w]))
    w.grad = torch.randn(4, 3)
    with pytest.raises(RuntimeError, match="train"):
        opt.step()
    assert torch.equal(w, before[0]) and opt.state[w]["step"] == before[1]["step"]
    other = ScheduleFreeSGD([torch.nn.Parameter(w.detach().clone())], lr=0.1)
    other.load_state_dict(saved)
    assert not other.train_mode


def test_lr_zero_moves_nothing():
    w = torch.nn.Parameter(torch.randn(5))
    opt = ScheduleFreeAdamW([w], lr=0.1)
    w.grad = torch.randn(5)
    opt.step()
    opt.param_groups[0]["lr"] = 0.0
    before = w.detach().clone()
    w.grad = torch.randn(5)
    opt.step()
    assert torch.equal(w.detach(), before)


def test_wraps_any_chain():
    # Schedule-Free around Adam's bias-corrected direction with momentum 0 equals Schedule-Free AdamW (to
    # rounding: sqrt(v) / sqrt(1 - b2^t) against sqrt(v / (1 - b2^t))).
    inner = chain(scale_by_adam(hp("adam_betas"), hp("eps")), add_decayed_weights(hp("weight_decay")))
    defaults = dict(lr=1e-3, betas=(0.9, 0.999), adam_betas=(0.0, 0.999), eps=1e-8, weight_decay=0.01,
                    warmup_steps=5)
    assert parity(lambda p: ScheduleFree(p, inner, defaults, momentum_key="betas"),
                  lambda p: ScheduleFreeAdamW(p, lr=1e-3, weight_decay=0.01, warmup_steps=5), model_fn=smooth_net,
                  steps=30) <= TOL


def test_batchnorm_statistics_are_recomputed_at_the_average():
    x, y = digits_batch(256)
    model = smooth_net()
    opt = ScheduleFreeAdamW(model.parameters(), lr=1e-2, warmup_steps=2)
    train(model, opt, 10, [(x, y)])
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 256, 64)]
    recompute_batchnorm_statistics(model, batches, opt)
    assert not opt.train_mode and model.training
    norm = model[1]
    with torch.no_grad():
        hidden = model[0](x)  # the params are x now; the statistics are those of x's activations
    torch.testing.assert_close(norm.running_mean, hidden.mean(0), rtol=1e-4, atol=1e-5)
    per_batch = torch.stack([model[0](xb).var(0, unbiased=True) for xb, _ in batches]).detach()
    torch.testing.assert_close(norm.running_var, per_batch.mean(0), rtol=1e-4, atol=1e-5)
    assert norm.momentum == 0.1


def test_state_bytes():
    check_state_bytes(lambda p: ScheduleFreeSGD(p), tensors_per_param=1)
    check_state_bytes(lambda p: ScheduleFreeAdamW(p), tensors_per_param=2)


@pytest.mark.parametrize("make, bad", [
    (ScheduleFreeSGD, dict(momentum=0.0)), (ScheduleFreeSGD, dict(warmup_steps=-1)), (ScheduleFreeSGD, dict(r=-1.0)),
    (ScheduleFreeAdamW, dict(betas=(0.9, 1.0))), (ScheduleFreeAdamW, dict(weight_lr_power=-2.0)),
])
def test_bad_arguments(make, bad):
    check_rejects(make, **bad)


def test_the_arena_evaluates_at_the_average():
    from gradkit.bench.runner import _evaluate

    class Task:
        def evaluate(self, model, data, split):
            return {"train_mode": opt.train_mode}

    model = smooth_net()
    opt = ScheduleFreeSGD(model.parameters(), lr=0.1)
    train_metrics, val_metrics = _evaluate(Task(), model, None, opt)
    assert train_metrics == val_metrics == {"train_mode": False}
    assert opt.train_mode and model.training


def test_state_nests_the_inner_chain_and_the_learning_rate_is_applied():
    import warnings

    from gradkit.core.state import ITERATE, SECOND_MOMENT

    w = torch.nn.Parameter(torch.randn(4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "never applies the learning rate" warning
        opt = ScheduleFreeAdamW([w], lr=0.1)
        w.grad = torch.randn(4, 3)
        opt.step()
    assert set(opt.state[w]) == {"step", "schedule_free.z", "schedule_free.inner.rms.exp_avg_sq"}
    assert opt.transform.kind_of("schedule_free.z") == ITERATE
    assert opt.transform.kind_of("schedule_free.inner.rms.exp_avg_sq") == SECOND_MOMENT
    assert opt.transform.lr_applied
