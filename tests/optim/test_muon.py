"""Muon with auxiliary AdamW: parity with pytorch_optimizer and the official code, routing, memory."""
from __future__ import annotations

import functools

import pytest
import torch

import gradkit
import gradkit.transforms.orthogonalization as ortho
from support import (
    digits_batches,
    digits_loss,
    max_relative_difference,
    mlp,
    run_quadratic,
    side_by_side,
    synthetic_batches,
    train,
    twin,
)

# Large gradients make the two codes' NS guards (x / (|x| + 1e-7) vs x / max(|x|, 1e-7)) agree. Newton-Schulz
# amplifies float rounding in weak directions (slope 3.4 per step), so 200-step parity needs float64 NS and
# moderate learning rates; with those the codes agree to a few 1e-6.
SCALE = 1000.0


def _train_scaled(model, opt, steps):
    batches = synthetic_batches()
    for t in range(steps):
        opt.zero_grad(set_to_none=True)
        (SCALE * digits_loss(model, batches[t % len(batches)])).backward()
        opt.step()


def test_parity_with_pytorch_optimizer(monkeypatch):
    pytest.importorskip("pytorch_optimizer", reason="pytorch_optimizer is a reference implementation of Muon")
    import pytorch_optimizer as po
    import pytorch_optimizer.optimizer.muon.base as base

    # Both iterate Newton-Schulz in bfloat16 by default, where op-order rounding differences blow up over 200
    # steps; run both in float64 (pytorch_optimizer hard-codes the dtype, so patch its call).
    monkeypatch.setattr(base, "zero_power_via_newton_schulz_5",
                        functools.partial(base.zero_power_via_newton_schulz_5, dtype=torch.float64))
    model = mlp()
    reference = twin(model)
    ours = gradkit.optim.Muon(model.parameters(), lr=0.01, weight_decay=0.01, adamw_lr=1e-3, ns_dtype=torch.float64)
    groups = [dict(params=[p for p in reference.parameters() if p.ndim >= 2], use_muon=True, weight_decay=0.01),
              dict(params=[p for p in reference.parameters() if p.ndim < 2], use_muon=False, lr=1e-3)]
    theirs = po.Muon(groups, lr=0.01)
    _train_scaled(model, ours, 200)
    _train_scaled(reference, theirs, 200)
    assert max_relative_difference(model, reference) <= 1e-5


def official_step(params, use_muon, states, lr, adam_lr, weight_decay, ns_dtype):
    """SingleDeviceMuonWithAuxAdam of github.com/KellerJordan/Muon (NS dtype as a parameter), per tensor."""
    a, b, c = ortho.MUON_COEFFICIENTS
    for p, muon in zip(params, use_muon):
        s = states.setdefault(p, {"buf": torch.zeros_like(p), "m": torch.zeros_like(p), "v": torch.zeros_like(p), "t": 0})
        g = p.grad.clone()
        if muon:
            s["buf"].lerp_(g, 1 - 0.95)
            u = g.lerp_(s["buf"], 0.95)
            x = u.to(ns_dtype)
            tall = x.size(-2) > x.size(-1)
            x = x.mT if tall else x
            x = x / (x.norm() + 1e-7)
            for _ in range(5):
                gram = x @ x.mT
                x = a * x + (b * gram + c * gram @ gram) @ x
            x = (x.mT if tall else x).float() * max(1, g.size(-2) / g.size(-1)) ** 0.5
            p.mul_(1 - lr * weight_decay)
            p.add_(x.reshape(p.shape), alpha=-lr)
        else:
            s["t"] += 1
            s["m"].lerp_(g, 1 - 0.9)
            s["v"].lerp_(g.square(), 1 - 0.95)
            upd = (s["m"] / (1 - 0.9 ** s["t"])) / ((s["v"] / (1 - 0.95 ** s["t"])).sqrt() + 1e-10)
            p.add_(upd, alpha=-adam_lr)


def test_matches_official_code_equations():
    model = mlp()
    reference = twin(model)
    opt = gradkit.optim.Muon(model.parameters(), lr=0.01, weight_decay=0.01, adamw_lr=1e-3, ns_dtype=torch.float64)
    states: dict = {}
    params = list(reference.parameters())
    flags = [p.ndim >= 2 for p in params]

    @torch.no_grad()
    def reference_step():
        official_step(params, flags, states, 0.01, 1e-3, 0.01, torch.float64)

    assert side_by_side(model, opt, reference, reference_step, synthetic_batches(), loss_scale=SCALE) <= 1e-5


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 8)
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.hidden = torch.nn.Linear(8, 8)
        self.hidden2 = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 10)


def _routing(opt):
    names = {}
    for g in opt.param_groups:
        for n in g.get("param_names", []):
            names[n] = g["use_muon"]
    return names


def test_routing_by_name_pattern_predicate_and_explicit_groups():
    net = _Net()
    opt = gradkit.optim.Muon(net.named_parameters(), adamw=["embed.*", "head.*"])
    assert _routing(opt) == {"conv.weight": True, "hidden.weight": True, "hidden2.weight": True, "embed.weight": False,
                             "conv.bias": False, "hidden.bias": False, "hidden2.bias": False, "head.weight": False,
                             "head.bias": False}
    adam = [g for g in opt.param_groups if not g["use_muon"]][0]
    assert adam["lr"] == 3e-4 and adam["betas"] == (0.9, 0.95) and adam["eps"] == 1e-10
    by_predicate = gradkit.optim.Muon(net.named_parameters(), adamw=lambda name, p: p.shape[0] == 10)
    assert _routing(by_predicate)["head.weight"] is False and _routing(by_predicate)["embed.weight"] is False
    explicit = gradkit.optim.Muon([{"params": [net.head.weight], "use_muon": False, "lr": 0.1},
                                   {"params": [net.hidden.weight], "use_muon": True}])
    assert [(g["use_muon"], g["lr"]) for g in explicit.param_groups] == [(False, 0.1), (True, 0.02)]
    with pytest.raises(ValueError, match="names"):
        gradkit.optim.Muon(net.parameters(), adamw="head.*")


def test_conv_weights_are_flattened_and_equal_shapes_batched(monkeypatch):
    net = _Net()
    calls = []
    original = ortho.newton_schulz

    def spy(g, *args, **kwargs):
        calls.append(tuple(g.shape))
        return original(g, *args, **kwargs)

    monkeypatch.setattr(ortho, "newton_schulz", spy)
    opt = gradkit.optim.Muon(net.named_parameters(), adamw=["embed.*", "head.*"], ns_dtype=torch.float32)
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    before = net.conv.weight.detach().clone()
    opt.step()
    # one batched iteration for the two 8x8 hidden matrices, one for the 4 x 9 flattened conv weight
    assert sorted(calls) == [(1, 4, 9), (2, 8, 8)]
    step = (net.conv.weight.detach() - before).reshape(4, 9) / 0.02
    lo, hi = ortho.SINGULAR_VALUE_BAND
    assert lo <= torch.linalg.matrix_norm(step, ord=2).item() <= hi


def test_reduces_loss():
    first, last = run_quadratic(lambda p: gradkit.optim.Muon(p, lr=0.05, adamw_lr=0.05))
    assert last < 0.2 * first
    model = mlp()
    losses = train(model, gradkit.optim.Muon(model.parameters(), lr=0.05, adamw_lr=1e-2), 40, digits_batches())
    assert losses[-1] < 0.5 * losses[0]


def test_state_memory_one_buffer_for_matrices_two_for_adamw():
    model = mlp()
    opt = gradkit.optim.Muon(model.parameters())
    train(model, opt, 1, synthetic_batches(1))
    matrices = sum(p.numel() for p in model.parameters() if p.ndim >= 2)
    vectors = sum(p.numel() for p in model.parameters() if p.ndim < 2)
    assert opt.state_bytes(by="kind")["moment"] == 4 * matrices + 8 * vectors


def test_state_dict_round_trip_continues_identically():
    model = mlp()
    opt = gradkit.optim.Muon(model.parameters(), lr=0.02, adamw_lr=1e-2)
    batches = synthetic_batches()
    train(model, opt, 3, batches)
    clone = twin(model)
    opt2 = gradkit.optim.Muon(clone.parameters(), lr=0.02, adamw_lr=1e-2)
    opt2.load_state_dict(opt.state_dict())
    train(model, opt, 3, batches)
    train(clone, opt2, 3, batches)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), clone.parameters()))
