"""MoreauGrad's defining properties: the plain gradient as rho -> 0, and the exact soft-thresholded
gradient of a linear score in the sparse and group-sparse variants."""
import copy

import pytest
import torch
from torch import nn

from gradkit.explain import group_sparse_moreaugrad, moreaugrad, saliency, sparse_moreaugrad
from gradkit.explain.moreaugrad import group_soft_threshold, soft_threshold


def _linear(weight: torch.Tensor) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.numel(), 1, bias=False)).double()
    with torch.no_grad():
        model[1].weight.copy_(weight.reshape(1, -1))
    return model.eval()


@pytest.mark.parametrize("rho", [1e-3, 1e-5])
def test_tends_to_the_plain_gradient_as_rho_goes_to_zero(rho, cnn64, images64):
    plain = saliency(cnn64, images64, 1, abs=False)
    smoothed = moreaugrad(cnn64, images64, 1, rho=rho, lr=rho, noise_level=0.0, steps=20)
    error = (smoothed - plain).abs().max().item() / plain.abs().max().item()
    assert error < 50 * rho  # first order in rho
    far = moreaugrad(cnn64, images64, 1, rho=10.0, lr=1.0, noise_level=0.0, steps=20)
    assert (far - plain).abs().max().item() / plain.abs().max().item() > 50 * rho  # the smoothing does act


def test_sparse_variant_is_the_soft_thresholded_gradient_of_a_linear_score():
    w = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eta = 0.7
    out = sparse_moreaugrad(_linear(w), x, 0, sparsity=eta, noise_level=0.0, rho=0.5, lr=0.5, steps=5)
    expected = soft_threshold(w, eta).expand_as(x)
    torch.testing.assert_close(out, expected)
    zeros = (out[0] == 0).float().mean().item()
    assert zeros == pytest.approx((w.abs() <= eta).float().mean().item()) and 0.3 < zeros < 0.8


def test_group_variant_zeroes_whole_blocks_as_the_group_soft_threshold():
    w = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eta = 1.5
    out = group_sparse_moreaugrad(_linear(w), x, 0, sparsity=eta, group_size=2, noise_level=0.0, rho=1.0, lr=1.0, steps=5)
    torch.testing.assert_close(out, group_soft_threshold(w.unsqueeze(0), eta, 2).expand_as(x))
    blocks = out[0, 0].reshape(4, 2, 4, 2).permute(0, 2, 1, 3).reshape(16, 4)
    zero_blocks = (blocks == 0).all(1)
    assert zero_blocks.any() and ((blocks == 0).any(1) == zero_blocks).all()  # a block is all zero or none
    norms = w[0].reshape(4, 2, 4, 2).permute(0, 2, 1, 3).reshape(16, 4).norm(dim=1)
    assert torch.equal(zero_blocks, norms <= eta)


def test_sparsity_grows_with_the_penalty(trained_cnn):
    from gradkit.datasets import digits

    val = digits("val", image=True)
    x, y = val.inputs[:8], val.targets[:8]
    fractions = [(sparse_moreaugrad(trained_cnn, x, y, sparsity=eta, generator=torch.Generator().manual_seed(0)) == 0)
                 .float().mean().item() for eta in (0.0, 0.5, 2.0)]
    assert fractions[0] < fractions[1] < fractions[2]


def test_bad_options_are_refused_and_leave_the_model(cnn64, images64):
    before = copy.deepcopy(cnn64.state_dict())
    for options, word in [({"rho": 0.0}, "rho"), ({"lr": 2.0}, "lr"), ({"sparsity": -1.0}, "sparsity"),
                          ({"group_size": 3, "sparsity": 0.1}, "group_size"), ({"average": 100}, "average")]:
        with pytest.raises(ValueError, match=word):
            moreaugrad(cnn64, images64, 1, **options)
    assert all(torch.equal(v, cnn64.state_dict()[k]) for k, v in before.items())
