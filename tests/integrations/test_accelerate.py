"""gradkit optimizers through accelerate's prepare: train, save_state, load_state, continue bitwise."""
import pytest
import torch

import gradkit
from gradkit.lowrank import FRUGAL
from integration_support import TinyLM, lm_loss, same_params, token_batches

accelerate = pytest.importorskip("accelerate", reason="needs the accelerate package (pip install gradkit[test])")
from accelerate.state import AcceleratorState  # noqa: E402

BATCHES, SAVE_AFTER = 12, 6  # batches of one epoch; the checkpoint is taken mid-epoch, after 3 optimizer steps

OPTIMIZERS = {
    "adamw": lambda model: gradkit.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1),
    "muon": lambda model: gradkit.optim.Muon(gradkit.param_groups(model), lr=0.02, adamw_lr=1e-2,
                                             ns_dtype=torch.float32),
    "frugal": lambda model: FRUGAL(gradkit.param_groups(model), lr=1e-2, density=0.5, update_freq=2,
                                   projector="random"),
}


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    # accelerate keeps one process-wide state (mixed precision, device); each test sets its own
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def _train(name, precision, *, cpu=True, save_to=None, resume_from=None, seed=0):
    accelerator = accelerate.Accelerator(cpu=cpu, mixed_precision=precision, gradient_accumulation_steps=2)
    model = TinyLM(seed)
    optimizer = OPTIMIZERS[name](model)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1.0 + step))
    data = torch.utils.data.DataLoader(torch.cat(token_batches(BATCHES)), batch_size=4, shuffle=False)
    model, optimizer, data, schedule = accelerator.prepare(model, optimizer, data, schedule)
    first = 0
    if resume_from is not None:
        accelerator.load_state(resume_from)
        data, first = accelerator.skip_first_batches(data, SAVE_AFTER), SAVE_AFTER
    for index, ids in enumerate(data, start=first):
        with accelerator.accumulate(model):
            accelerator.backward(lm_loss(model, ids))
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        if save_to is not None and index + 1 == SAVE_AFTER:
            accelerator.save_state(save_to)
    return accelerator.unwrap_model(model), optimizer


@pytest.mark.parametrize("name, precision", [("adamw", "no"), ("muon", "no"), ("frugal", "no"), ("muon", "bf16"),
                                             ("frugal", "bf16")])
def test_prepare_save_state_load_state_resume_bitwise(tmp_path, name, precision):
    full, optimizer = _train(name, precision, save_to=tmp_path / "state")
    assert isinstance(optimizer.optimizer, gradkit.Optimizer)
    assert {s["step"] for s in optimizer.optimizer.state.values()} == {BATCHES // 2}
    AcceleratorState._reset_state(True)
    resumed, _ = _train(name, precision, resume_from=tmp_path / "state", seed=1)
    assert same_params(full, resumed)


@pytest.mark.gpu
@pytest.mark.parametrize("nonfinite", ["raise", "skip", "ignore"])
def test_fp16_on_cuda_goes_through_the_scaler(tmp_path, nonfinite):
    accelerator = accelerate.Accelerator(mixed_precision="fp16",
                                         kwargs_handlers=[accelerate.utils.GradScalerKwargs(init_scale=2.0 ** 24)])
    model = TinyLM()
    optimizer = gradkit.optim.AdamW(model.parameters(), lr=1e-2, nonfinite=nonfinite)
    model, optimizer = accelerator.prepare(model, optimizer)
    skipped = 0
    for ids in token_batches(10):
        accelerator.backward(lm_loss(model, ids.to(accelerator.device)))
        optimizer.step()
        optimizer.zero_grad()
        skipped += optimizer.step_was_skipped
    assert 0 < skipped < 10 and optimizer.optimizer.skipped_steps == 0
    assert {s["step"] for s in optimizer.optimizer.state.values()} == {10 - skipped}
