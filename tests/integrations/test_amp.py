"""gradkit optimizers under torch.amp.GradScaler, with every ``nonfinite`` policy.

GradScaler.step unscales the gradients, checks them for inf/nan and calls ``optimizer.step()`` only when
they are finite; a step with an overflow never reaches the optimizer, whose own check therefore never
fires (and ``skipped_steps`` stays 0). The scales are powers of two, so unscaling is exact and a run
with an overflowing step equals the run without that step, bitwise.
"""
import pytest
import torch

import gradkit
from gradkit.core.optimizer import NONFINITE_POLICIES
from gradkit.lowrank import FRUGAL
from integration_support import TinyLM, lm_loss, same_params, token_batches

OPTIMIZERS = {
    "adamw": lambda params, nonfinite: gradkit.optim.AdamW(params, lr=1e-2, weight_decay=0.1, nonfinite=nonfinite),
    "muon": lambda model, nonfinite: gradkit.optim.Muon(gradkit.param_groups(model), lr=0.02, adamw_lr=1e-2,
                                                        ns_dtype=torch.float32, nonfinite=nonfinite),
    "frugal": lambda model, nonfinite: FRUGAL(gradkit.param_groups(model), lr=1e-2, density=0.5, update_freq=2,
                                              projector="random", nonfinite=nonfinite),
}


def _make(name, model, nonfinite):
    return OPTIMIZERS[name](model.parameters() if name == "adamw" else model, nonfinite)


def _amp_step(model, optimizer, scaler, ids, poison=False):
    """One mixed-precision step as torch's AMP recipe writes it, with clipping of the unscaled gradients."""
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = lm_loss(model, ids)
    if poison:
        loss = loss * float("inf")  # an overflow, as a too-large loss scale would cause in float16
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()


def _scaler():
    return torch.amp.GradScaler("cpu", init_scale=2.0 ** 12, growth_interval=2)


@pytest.mark.parametrize("nonfinite", NONFINITE_POLICIES)
def test_adamw_under_gradscaler_is_bitwise_torch_adamw_through_an_overflow(nonfinite):
    batches = token_batches(6)
    ours, theirs = TinyLM(), TinyLM()
    opt_ours = gradkit.optim.AdamW(ours.parameters(), lr=1e-2, weight_decay=0.1, nonfinite=nonfinite)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.1, foreach=True)
    scaler_ours, scaler_theirs = _scaler(), _scaler()
    for i, ids in enumerate(batches):
        _amp_step(ours, opt_ours, scaler_ours, ids, poison=i == 2)
        _amp_step(theirs, opt_theirs, scaler_theirs, ids, poison=i == 2)
    assert same_params(ours, theirs)
    assert scaler_ours.get_scale() == scaler_theirs.get_scale()
    assert opt_ours.skipped_steps == 0  # the scaler skipped the step; the optimizer never saw the overflow
    assert {s["step"] for s in opt_ours.state.values()} == {len(batches) - 1}


@pytest.mark.parametrize("nonfinite", NONFINITE_POLICIES)
@pytest.mark.parametrize("name", ["muon", "frugal"])
def test_an_overflowing_step_is_as_if_it_never_happened(name, nonfinite):
    batches = token_batches(6)
    with_overflow, without = TinyLM(), TinyLM()
    opt_a, opt_b = _make(name, with_overflow, nonfinite), _make(name, without, nonfinite)
    scaler_a, scaler_b = _scaler(), _scaler()
    for i, ids in enumerate(batches):
        _amp_step(with_overflow, opt_a, scaler_a, ids, poison=i == 2)
        if i != 2:
            _amp_step(without, opt_b, scaler_b, ids)
    assert same_params(with_overflow, without)
    assert opt_a.skipped_steps == 0 and scaler_a.get_scale() != scaler_b.get_scale()


def test_without_a_scaler_the_optimizer_check_is_what_stops_an_overflow():
    """The control for the tests above: the same poisoned step without a GradScaler reaches the optimizer."""
    model = TinyLM()
    opt = gradkit.optim.AdamW(model.parameters(), lr=1e-2, nonfinite="raise")
    (lm_loss(model, token_batches(1)[0]) * float("inf")).backward()
    with pytest.raises(FloatingPointError):
        opt.step()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_checkpoint_with_the_scaler_resumes_bitwise(tmp_path, name):
    batches = token_batches(6)
    model = TinyLM()
    opt, scaler = _make(name, model, "skip"), _scaler()
    for i, ids in enumerate(batches):
        if i == 3:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict()},
                       tmp_path / "checkpoint.pt")
        _amp_step(model, opt, scaler, ids, poison=i == 1)

    resumed = TinyLM(seed=1)
    opt2, scaler2 = _make(name, resumed, "skip"), _scaler()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    resumed.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["optimizer"])
    scaler2.load_state_dict(saved["scaler"])
    for ids in batches[3:]:
        _amp_step(resumed, opt2, scaler2, ids)
    assert same_params(model, resumed) and scaler.get_scale() == scaler2.get_scale()


@pytest.mark.gpu
@pytest.mark.parametrize("nonfinite", NONFINITE_POLICIES)
def test_float16_autocast_on_cuda_is_bitwise_torch_adamw(nonfinite):
    batches = [ids.cuda() for ids in token_batches(10)]
    ours, theirs = TinyLM().cuda(), TinyLM().cuda()
    opt_ours = gradkit.optim.AdamW(ours.parameters(), lr=1e-2, weight_decay=0.1, nonfinite=nonfinite)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.1, foreach=True)
    scaler_ours = torch.amp.GradScaler("cuda", init_scale=2.0 ** 24)  # overflows float16 for the first steps
    scaler_theirs = torch.amp.GradScaler("cuda", init_scale=2.0 ** 24)
    for ids in batches:
        for model, opt, scaler in ((ours, opt_ours, scaler_ours), (theirs, opt_theirs, scaler_theirs)):
            opt.zero_grad()
            with torch.autocast("cuda", dtype=torch.float16):
                loss = lm_loss(model, ids)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    taken = {int(s["step"]) for s in opt_theirs.state.values()}
    assert len(taken) == 1 and 0 < taken.pop() < len(batches)  # some steps overflowed, some were taken
    assert scaler_ours.get_scale() == scaler_theirs.get_scale()
    assert same_params(ours, theirs) and opt_ours.skipped_steps == 0
