"""The Softmax-Collapse diagnostic against its definition on hand-built logits."""
import pytest
import torch

from gradkit.inspect import softmax_collapse


def test_equals_its_definition_on_hand_built_float32_logits():
    logits = torch.tensor([
        [0.0, 200.0, -5.0],   # exp(-200) underflows: the whole gradient row is 0
        [0.0, 20.0, 0.0],     # p_y rounds to 1 (correct-class gradient 0), the others are ~2e-9, not 0
        [0.0, 1.0, 0.0],      # no collapse
        [30.0, 0.0, 0.0],     # collapsed on class 0...
        [30.0, 0.0, 0.0],     # ...but not when the label is another class
    ])
    target = torch.tensor([1, 1, 1, 0, 2])
    result = softmax_collapse(logits, target)
    assert result.samples == 5
    assert result.collapsed == 3 / 5
    assert result.zero_gradient == 1 / 5


def test_by_hand_from_softmax_minus_onehot():
    torch.manual_seed(0)
    logits = torch.randn(64, 7) * torch.logspace(0, 2.2, 64).unsqueeze(1)
    target = logits.argmax(1)
    grad = torch.softmax(logits, 1) - torch.nn.functional.one_hot(target, 7)
    expected_collapsed = (grad[torch.arange(64), target] == 0).float().mean().item()
    result = softmax_collapse(logits, target)
    assert 0 < result.collapsed < 1  # the test spans both regimes
    assert result.collapsed == pytest.approx(expected_collapsed, abs=1 / 64)


def test_float64_collapses_later_than_float32():
    logits = torch.tensor([[0.0, 20.0]])
    target = torch.tensor([1])
    assert softmax_collapse(logits, target).collapsed == 1.0
    assert softmax_collapse(logits.double(), target).collapsed == 0.0


def test_leaves_the_logits_graph_alone():
    w = torch.randn(3, 4, requires_grad=True)
    logits = torch.randn(5, 3) @ w
    softmax_collapse(logits, torch.zeros(5, dtype=torch.long))
    assert w.grad is None


@pytest.mark.parametrize("logits, target, word", [
    (torch.zeros(3), torch.zeros(3, dtype=torch.long), "logits"),
    (torch.zeros(2, 3), torch.zeros(2), "target"),
    (torch.zeros(2, 3), torch.zeros(3, dtype=torch.long), "target"),
    (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "N = 0"),
])
def test_rejects_bad_input(logits, target, word):
    with pytest.raises(ValueError, match=word):
        softmax_collapse(logits, target)
