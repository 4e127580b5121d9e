"""gradkit optimizers under Hugging Face's Trainer: train, checkpoint, resume, continue bitwise."""
import os
import warnings

import pytest
import torch

import gradkit
from gradkit.grouping import RoutingWarning
from gradkit.lowrank import FRUGAL
from integration_support import VOCAB, same_params, tiny_llama, token_rows

transformers = pytest.importorskip("transformers", reason="needs the transformers package (pip install gradkit[test])")

STEPS, SAVE_AT = 6, 3

OPTIMIZERS = {
    "adamw": lambda model: gradkit.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1),
    "muon": lambda model: gradkit.optim.Muon(gradkit.param_groups(model), lr=0.02, adamw_lr=1e-2,
                                             ns_dtype=torch.float32),
    "frugal": lambda model: FRUGAL(gradkit.param_groups(model), lr=1e-2, density=0.5, update_freq=2,
                                   projector="random"),
}


def _args(out_dir, **overrides):
    # 32 rows, 4 per batch, 2 accumulated: 4 steps an epoch, so the checkpoint at step 3 is mid-epoch and
    # the resumed run crosses an epoch boundary.
    settings = dict(output_dir=str(out_dir), max_steps=STEPS, per_device_train_batch_size=4,
                    gradient_accumulation_steps=2, max_grad_norm=1.0, save_strategy="steps", save_steps=SAVE_AT,
                    logging_strategy="no", report_to="none", use_cpu=True, seed=0, disable_tqdm=True,
                    dataloader_num_workers=0)
    return transformers.TrainingArguments(**{**settings, **overrides})


def _train(out_dir, make_optimizer, *, resume=None, model_seed=0):
    model = tiny_llama(seed=model_seed)
    optimizer = make_optimizer(model)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1.0 + step))
    trainer = transformers.Trainer(model=model, args=_args(out_dir), train_dataset=token_rows(32),
                                   optimizers=(optimizer, schedule))
    trainer.train(resume_from_checkpoint=resume)
    return model, trainer


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_and_scheduler_resume_bitwise(tmp_path, name):
    full, _ = _train(tmp_path / "full", OPTIMIZERS[name])
    checkpoint = tmp_path / "full" / f"checkpoint-{SAVE_AT}"
    # the resumed model starts from other weights: everything must come from the checkpoint
    resumed, trainer = _train(tmp_path / "resumed", OPTIMIZERS[name], resume=str(checkpoint), model_seed=1)
    assert trainer.state.global_step == STEPS
    assert same_params(full, resumed)


def test_resume_without_the_optimizer_state_differs(tmp_path):
    """The control for the test above: the optimizer state is what makes the resumed run identical."""
    full, _ = _train(tmp_path / "full", OPTIMIZERS["adamw"])
    checkpoint = tmp_path / "full" / f"checkpoint-{SAVE_AT}"
    os.remove(checkpoint / "optimizer.pt")
    resumed, _ = _train(tmp_path / "resumed", OPTIMIZERS["adamw"], resume=str(checkpoint))
    assert not same_params(full, resumed)


def _muon_kwargs(model):
    # Trainer pops "params" from these kwargs and passes it as the optimizer's params
    return {"params": gradkit.param_groups(model, settings={"vector": {"adamw_weight_decay": 0.0}}), "lr": 0.02,
            "adamw_lr": 1e-2, "adamw_weight_decay": 0.1, "ns_dtype": torch.float32}


def _train_cls_and_kwargs(out_dir, *, resume=None, model_seed=0):
    model = tiny_llama(seed=model_seed)
    trainer = transformers.Trainer(model=model, args=_args(out_dir), train_dataset=token_rows(32),
                                   optimizer_cls_and_kwargs=(gradkit.optim.Muon, _muon_kwargs(model)))
    trainer.train(resume_from_checkpoint=resume)
    return model, trainer


def test_optimizer_cls_and_kwargs_with_param_groups_routes_by_kind_and_resumes_bitwise(tmp_path):
    full, trainer = _train_cls_and_kwargs(tmp_path / "full")
    routed = {n: g["use_muon"] for g in trainer.optimizer.param_groups for n in g["param_names"]}
    assert {n for n, muon in routed.items() if muon} == {n for n, p in full.named_parameters()
                                                         if p.dim() == 2 and "layers" in n}
    assert routed["model.embed_tokens.weight"] is False and routed["lm_head.weight"] is False
    checkpoint = tmp_path / "full" / f"checkpoint-{SAVE_AT}"
    resumed, trainer = _train_cls_and_kwargs(tmp_path / "resumed", resume=str(checkpoint), model_seed=1)
    assert trainer.state.global_step == STEPS
    assert same_params(full, resumed)


def _trainer_with(tmp_path, optimizer_cls, kwargs):
    return transformers.Trainer(model=tiny_llama(), args=_args(tmp_path), train_dataset=token_rows(8),
                                optimizer_cls_and_kwargs=(optimizer_cls, kwargs))


def test_optimizer_cls_and_kwargs_without_names_never_routes_silently(tmp_path):
    # Trainer passes unnamed param groups: name rules cannot apply, and gradkit says so
    with pytest.raises(ValueError, match=r"need parameter names.*gradkit.param_groups"):
        _trainer_with(tmp_path, gradkit.optim.Muon, {"adamw": ["*embed_tokens*", "lm_head*"]}).create_optimizer()
    with pytest.warns(RoutingWarning, match=rf"without names and are projected: group 0 param 0 \({VOCAB}, 16\)"):
        _trainer_with(tmp_path, FRUGAL, {"density": 0.5}).create_optimizer()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = tiny_llama()
        trainer = transformers.Trainer(model=model, args=_args(tmp_path), train_dataset=token_rows(8),
                                       optimizer_cls_and_kwargs=(FRUGAL, {"params": gradkit.param_groups(model)}))
        trainer.create_optimizer()
    projected = {n for g in trainer.optimizer.param_groups if g["project"] for n in g["param_names"]}
    assert projected == {n for n, p in model.named_parameters() if p.dim() == 2 and "layers" in n}


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_param_groups_of_transformers_models(family):
    if family == "llama":
        model = tiny_llama(tied=True)
        hidden = {n for n, p in model.named_parameters() if p.dim() == 2 and "layers" in n}
        expected_head = set()  # tied to the embedding: the one parameter is the embedding
    else:
        config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=8, n_embd=16, n_layer=1, n_head=2)
        model = transformers.GPT2LMHeadModel(config)
        hidden = {n for n, p in model.named_parameters() if p.dim() == 2 and ".h." in n}  # Conv1D weights
        expected_head = set()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        groups = gradkit.param_groups(model)
    by_kind = {g["kind"]: {n for n, _ in g["params"]} for g in groups}
    assert by_kind["hidden"] == hidden
    assert by_kind.get("head", set()) == expected_head
    assert by_kind["embedding"] == {n for n, p in model.named_parameters() if "wte" in n or "wpe" in n
                                    or "embed_tokens" in n}
    assert all(p.dim() < 2 for n, p in model.named_parameters() if n in by_kind["vector"])
