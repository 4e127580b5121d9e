"""Feature strengths are the singular values of the label-weighted tangent features, and Spectral
Decoupling is the stated penalty on the logits."""
import pytest
import torch
from torch import nn

from gradkit.inspect.starvation import feature_strengths
from gradkit.losses import spectral_decoupling


def test_linear_binary_model_strengths_are_the_singular_values_of_y_times_x():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 4, generator=gen, dtype=torch.float64) * torch.tensor([5.0, 1.0, 0.5, 0.1], dtype=torch.float64)
    y = torch.randint(0, 2, (12,), generator=gen)
    model = nn.Linear(4, 1, bias=False).double()
    result = feature_strengths(model, x, y)
    signed = x * torch.where(y > 0, 1.0, -1.0).double().unsqueeze(1)  # Phi = x for a linear model
    torch.testing.assert_close(result.strengths, torch.linalg.svdvals(signed))
    assert result.share.sum().item() == pytest.approx(1.0)
    assert result.dominance > 0.8 and 1.0 < result.effective_features < 1.5  # one feature carries it
    torch.testing.assert_close(result.loadings.norm(dim=0), result.strengths)


def test_multiclass_rows_are_the_target_logit_gradients():
    torch.manual_seed(0)
    model = nn.Linear(3, 4).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 3, 3, 2])
    rows = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(model(x[i])[y[i]], list(model.parameters()))]) for i in range(5)])
    torch.testing.assert_close(feature_strengths(model, x, y, top=3).strengths, torch.linalg.svdvals(rows)[:3])


def test_spectral_decoupling_is_half_lambda_mean_squared_logits():
    logits = torch.tensor([[1.0, 2.0], [0.0, -3.0]], requires_grad=True)
    loss = spectral_decoupling(logits, weight=0.2)
    assert loss.item() == pytest.approx(0.1 * (5 + 9) / 2)
    (grad,) = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(grad, 0.2 * logits.detach() / 2)
    per_class = spectral_decoupling(logits, weight=torch.tensor([0.2, 0.0]), gamma=torch.tensor([1.0, 0.0]))
    assert per_class.item() == pytest.approx(0.1 * (0 + 1) / 2)
    with pytest.raises(ValueError, match="weight"):
        spectral_decoupling(logits, weight=-1.0)
