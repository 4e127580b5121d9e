"""StableMax and its cross-entropy (Prieto et al., ICLR 2025) against their definition."""
import pytest
import torch

from gradkit.losses import log_stablemax, stablemax, stablemax_cross_entropy


def _definition(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    s = torch.where(x >= 0, x + 1, 1 / (1 - x))
    return s / s.sum(-1, keepdim=True)


def test_stablemax_equals_its_definition():
    torch.manual_seed(0)
    x = torch.randn(8, 11) * 5
    torch.testing.assert_close(stablemax(x).double(), _definition(x), rtol=1e-6, atol=1e-7)
    assert torch.allclose(stablemax(x).sum(-1), torch.ones(8))


def test_cross_entropy_is_minus_log_of_the_definition():
    torch.manual_seed(1)
    x, y = torch.randn(6, 5) * 3, torch.randint(0, 5, (6,))
    expected = -_definition(x)[torch.arange(6), y].log()
    torch.testing.assert_close(stablemax_cross_entropy(x, y, reduction="none").double(), expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(stablemax_cross_entropy(x, y).double(), expected.mean(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(stablemax_cross_entropy(x, y, reduction="sum").double(), expected.sum(), rtol=1e-6, atol=1e-7)


def test_finite_with_a_gradient_where_softmax_collapses_in_float32():
    # one logit leads by ~1e3: softmax rounds to exactly one-hot, its cross-entropy and gradient are 0
    logits = torch.tensor([[1000.0, -1000.0, 3.0], [950.0, 0.0, -2.0]], requires_grad=True)
    target = torch.tensor([0, 0])
    softmax_loss = torch.nn.functional.cross_entropy(logits, target, reduction="sum")
    (softmax_grad,) = torch.autograd.grad(softmax_loss, logits)
    assert softmax_loss.item() == 0.0 and (softmax_grad == 0).all()  # the collapse StableMax avoids
    loss = stablemax_cross_entropy(logits, target, reduction="sum")
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(loss) and loss.item() > 0
    assert torch.isfinite(grad).all() and (grad[:, 0] != 0).all()
    # and the value is the definition's, computed in float64
    expected = -_definition(logits.detach())[torch.arange(2), target].log().sum()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)  # log(sum) - log(s_y) in float32


def test_log_space_form_matches_log_of_stablemax_for_extreme_logits():
    x = torch.tensor([[1e3, -1e3, 0.0, -1e6]])
    out = log_stablemax(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), _definition(x).log(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("args, word", [
    ((torch.zeros(2, 3), torch.zeros(2)), "target"),
    ((torch.zeros(3), torch.zeros(3, dtype=torch.long)), "logits"),
    ((torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long)), "logits"),
])
def test_rejects_bad_input(args, word):
    with pytest.raises(ValueError, match=word):
        stablemax_cross_entropy(*args)
    with pytest.raises(ValueError, match="reduction"):
        stablemax_cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), reduction="avg")
