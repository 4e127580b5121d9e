"""gradkit optimizers on torch.compile'd models: same routing, same steps, same checkpoints as eager."""
import pytest
import torch

import gradkit
from gradkit.grouping import RoutingWarning
from gradkit.lowrank import FRUGAL
from integration_support import TinyLM, lm_loss, max_difference, same_params, token_batches

# torch's own inductor import calls the deprecated torch.jit.script_method (torch/utils/mkldnn.py)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

OPTIMIZERS = {
    "adamw": lambda model: gradkit.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1),
    "muon": lambda model: gradkit.optim.Muon(gradkit.param_groups(model), lr=0.02, adamw_lr=1e-2,
                                             ns_dtype=torch.float32),
    "frugal": lambda model: FRUGAL(gradkit.param_groups(model), lr=1e-2, density=0.5, update_freq=2,
                                   projector="random"),
}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _train(model, optimizer, batches):
    for ids in batches:
        optimizer.zero_grad()
        lm_loss(model, ids).backward()
        optimizer.step()


def test_param_groups_see_through_the_compiled_wrapper():
    model = TinyLM()
    eager = [(g["kind"], [n for n, _ in g["params"]]) for g in gradkit.param_groups(model)]
    compiled = [(g["kind"], [n.removeprefix("_orig_mod.") for n, _ in g["params"]])
                for g in gradkit.param_groups(torch.compile(model))]
    assert compiled == eager and ("head", ["head.weight"]) in eager


def test_name_patterns_written_for_the_eager_model_are_flagged_on_the_compiled_one():
    compiled = torch.compile(TinyLM())  # its parameter names start with "_orig_mod."
    with pytest.warns(RoutingWarning, match=r"\['embed\.\*', 'head\.\*'\] matched no parameter name"):
        gradkit.optim.Muon(compiled.named_parameters(), adamw=["embed.*", "head.*"])
    opt = gradkit.optim.Muon(compiled.named_parameters(), adamw=["*embed.*", "*head.*"])
    assert {n for g in opt.param_groups if g["use_muon"] for n in g["param_names"]} == {"_orig_mod.up.weight",
                                                                                       "_orig_mod.down.weight"}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_compiled_training_and_resume_are_bitwise_eager(tmp_path, name):
    # aot_eager traces forward and backward into graphs of the same aten ops as eager mode, so the
    # gradients, and every step after them, are bitwise those of the eager model
    batches = token_batches(6)
    eager = TinyLM()
    _train(eager, OPTIMIZERS[name](eager), batches)

    model = TinyLM()
    compiled = torch.compile(model, backend="aot_eager")
    optimizer = OPTIMIZERS[name](compiled)
    _train(compiled, optimizer, batches[:3])
    torch.save({"model": compiled.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "checkpoint.pt")
    _train(compiled, optimizer, batches[3:])
    assert same_params(eager, model)

    resumed = TinyLM(seed=1)
    compiled_resumed = torch.compile(resumed, backend="aot_eager")
    optimizer_resumed = OPTIMIZERS[name](compiled_resumed)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    compiled_resumed.load_state_dict(saved["model"])
    optimizer_resumed.load_state_dict(saved["optimizer"])
    _train(compiled_resumed, optimizer_resumed, batches[3:])
    assert same_params(eager, resumed)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_inductor_compiled_training_matches_eager_to_float_rounding(name):
    # inductor fuses the forward and backward into new kernels, which round differently: the gradients
    # agree to float32 rounding, and 6 steps keep the weights within 1e-5
    batches = token_batches(6)
    eager, model = TinyLM(), TinyLM()
    _train(eager, OPTIMIZERS[name](eager), batches)
    compiled = torch.compile(model)
    _train(compiled, OPTIMIZERS[name](compiled), batches)
    assert max_difference(eager, model) < 1e-5
