"""Parameters on the meta device (shapes without data: deferred initialisation, memory estimates) step as
torch.optim's do: no value is read on the host, the state stays on meta."""
import pytest
import torch

from gradkit.registry import get_optimizer, list_entries

# Their step reads a data-dependent number on the host (the step-size estimates of Prodigy,
# D-Adaptation, DoG and U-DoG) or draws random probes on the param's device (PSGD Kron): they need real tensors.
NEEDS_DATA = {"dadapt_adam", "prodigy", "psgd_kron", "dog", "udog"}
NAMES = [e.name for e in list_entries("optimizer") if e.name not in NEEDS_DATA]

pytestmark = pytest.mark.filterwarnings("ignore::gradkit.grouping.RoutingWarning")


@pytest.mark.parametrize("nonfinite", ["raise", "ignore"])
@pytest.mark.parametrize("name", NAMES)
def test_meta_params_step(name, nonfinite):
    params = [torch.nn.Parameter(torch.empty(8, 6, device="meta")), torch.nn.Parameter(torch.empty(6, device="meta"))]
    for p in params:
        p.grad = torch.empty_like(p)
    opt = get_optimizer(name)(params, nonfinite=nonfinite)
    opt.step()
    opt.step()
    states = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    assert all(v.device.type == "meta" for v in states)  # plain SGD keeps none
    assert all(s["step"] == 2 for s in opt.state.values())
