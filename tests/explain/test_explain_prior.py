"""Attribution priors: differentiable w.r.t. the parameters, and they do shape the attributions."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gradkit.datasets import digits
from gradkit.explain import attribution_prior, expected_gradients, sparsity_prior, total_variation_prior


def test_sparsity_prior_is_minus_gini():
    one_hot = torch.zeros(1, 8, dtype=torch.float64)
    one_hot[0, 3] = 2.0
    torch.testing.assert_close(sparsity_prior(one_hot), torch.tensor(-7 / 8, dtype=torch.float64))
    torch.testing.assert_close(sparsity_prior(torch.ones(3, 8, dtype=torch.float64)), torch.tensor(0.0, dtype=torch.float64))


def test_total_variation_prior():
    a = torch.zeros(1, 1, 3, 3)
    a[0, 0, 1, 1] = 1.0
    assert total_variation_prior(a).item() == 4.0
    assert total_variation_prior(torch.ones(2, 1, 3, 3)).item() == 0.0


def test_prior_is_differentiable_in_the_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10))
    x = digits("train", image=True).inputs[:8]
    y = digits("train", image=True).targets[:8]
    penalty = attribution_prior(model, x, y, references=x.flip(0), prior="smoothness", generator=torch.Generator().manual_seed(0))
    grads = torch.autograd.grad(penalty, list(model.parameters()), allow_unused=True)
    # both weights shape the input-gradient of a ReLU net (its biases only switch units on or off,
    # which has zero derivative, and the last bias shifts nothing the gradient sees)
    assert grads[0].abs().sum() > 0 and grads[2].abs().sum() > 0
    assert grads[3] is None
    # the penalty is exactly the prior on create_graph Expected Gradients with the same draws
    eg = expected_gradients(model, x, y, references=x.flip(0), samples=1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(penalty.detach(), total_variation_prior(eg))


def _train(prior_weight: float) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    data = digits("train", image=True)
    x, y = data.inputs[:256], data.targets[:256]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for step in range(60):
        idx = torch.randint(256, (64,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        if prior_weight:
            loss = loss + prior_weight * attribution_prior(model, x[idx], y[idx], references=x[idx.roll(1)], generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, x


def test_training_with_the_smoothness_prior_gives_smoother_attributions():
    plain, x = _train(0.0)
    smooth, _ = _train(0.03)
    probe = digits("val", image=True)
    xs, ys = probe.inputs[:64], probe.targets[:64]

    def tv(model):
        eg = expected_gradients(model.eval(), xs, ys, references=x[:64], samples=16, generator=torch.Generator().manual_seed(2))
        return total_variation_prior(eg).item()

    assert tv(smooth) < 0.7 * tv(plain)
    with torch.no_grad():
        assert (smooth(xs).argmax(1) == ys).float().mean() > 0.9  # still a good classifier
