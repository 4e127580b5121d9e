"""``torch.compile(opt.step)``: the step runs eagerly inside the compiled caller (no recompiles when an LR
scheduler changes the lr), with the numbers of a plain step; ``fused=True`` is the compiled step."""
import pytest
import torch

from gradkit.registry import get_optimizer

dynamo = pytest.importorskip("torch._dynamo", reason="needs torch.compile (Dynamo)")
from torch._dynamo.utils import counters  # noqa: E402


def _train(compiled: bool, name: str = "adamw"):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = get_optimizer(name)(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, 0.9)
    step = torch.compile(opt.step) if compiled else opt.step
    data = torch.randn(6, 8, 4)
    for x in data:
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        step()
        scheduler.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", ["adamw", "lion"])
def test_compiling_step_with_a_scheduler_does_not_recompile_and_changes_no_number(name):
    dynamo.reset()
    counters.clear()
    compiled = _train(True, name)
    assert counters["stats"]["unique_graphs"] == 0  # the step is a graph break, never traced per lr value
    for a, b in zip(compiled, _train(False, name)):
        assert torch.equal(a, b)


def test_a_fused_optimizer_refuses_to_run_under_torch_compile():
    dynamo.reset()
    model = torch.nn.Linear(4, 3)
    opt = get_optimizer("adamw")(model.parameters(), lr=1e-2, fused=True)
    model(torch.randn(8, 4)).sum().backward()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="fused=True"):
        torch.compile(opt.step)()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
