"""gradkit optimizers from Lightning's configure_optimizers: train, checkpoint, resume, continue bitwise."""
import warnings

import pytest
import torch

import gradkit
from gradkit.lowrank import FRUGAL
from integration_support import TinyLM, lm_loss, same_params, token_batches

L = pytest.importorskip("lightning.pytorch", reason="needs the lightning package (pip install gradkit[test])")

STEPS_PER_EPOCH, EPOCHS = 4, 2

OPTIMIZERS = {
    "adamw": lambda model: gradkit.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1),
    "muon": lambda model: gradkit.optim.Muon(gradkit.param_groups(model), lr=0.02, adamw_lr=1e-2,
                                             ns_dtype=torch.float32),
    "frugal": lambda model: FRUGAL(gradkit.param_groups(model), lr=1e-2, density=0.5, update_freq=3,
                                   projector="random"),
}


class LitLM(L.LightningModule):
    def __init__(self, optimizer: str, seed: int = 0):
        super().__init__()
        self.model = TinyLM(seed)
        self.optimizer = optimizer

    def training_step(self, batch, batch_idx):
        return lm_loss(self.model, batch)

    def configure_optimizers(self):
        optimizer = OPTIMIZERS[self.optimizer](self.model)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1.0 + step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _fit(root, optimizer, precision, *, resume=None, seed=0, accelerator="cpu"):
    # 8 batches, 2 accumulated per step: 4 steps an epoch; the checkpoint after epoch 1 is resumed into epoch 2
    checkpoints = L.callbacks.ModelCheckpoint(dirpath=root, filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator=accelerator, devices=1, precision=precision,
                        accumulate_grad_batches=2, gradient_clip_val=1.0, callbacks=[checkpoints], logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    module = LitLM(optimizer, seed)
    data = torch.utils.data.DataLoader(torch.cat(token_batches(8)), batch_size=4, shuffle=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers).*")
        trainer.fit(module, data, ckpt_path=resume)
    return module, trainer


# Lightning runs "16-mixed" as "bf16-mixed" on a CPU (it says so in a warning), so its GradScaler path is
# covered by test_amp.py and test_accelerate.py instead.
@pytest.mark.filterwarnings("ignore:The dirpath has changed")
@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated")
@pytest.mark.parametrize("optimizer, precision", [("adamw", "32-true"), ("muon", "32-true"), ("frugal", "32-true"),
                                                  ("muon", "bf16-mixed"), ("frugal", "bf16-mixed"),
                                                  ("adamw", "bf16-true")])
def test_configure_optimizers_resume_bitwise(tmp_path, optimizer, precision):
    full, trainer = _fit(tmp_path / "full", optimizer, precision)
    assert trainer.global_step == STEPS_PER_EPOCH * EPOCHS
    resumed, trainer = _fit(tmp_path / "resumed", optimizer, precision, resume=str(tmp_path / "full" / "epoch=0.ckpt"),
                            seed=1)
    assert trainer.global_step == STEPS_PER_EPOCH * EPOCHS
    assert same_params(full.model, resumed.model)


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:The dirpath has changed")
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_16_mixed_on_cuda_steps_through_the_scaler_and_resumes_bitwise(tmp_path, optimizer):
    full, trainer = _fit(tmp_path / "full", optimizer, "16-mixed", accelerator="gpu")
    assert trainer.global_step == STEPS_PER_EPOCH * EPOCHS
    assert isinstance(trainer.precision_plugin.scaler, torch.amp.GradScaler)
    resumed, _ = _fit(tmp_path / "resumed", optimizer, "16-mixed", resume=str(tmp_path / "full" / "epoch=0.ckpt"),
                      seed=1, accelerator="gpu")
    assert same_params(full.model, resumed.model)
