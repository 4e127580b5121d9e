"""NormGrad equals the Frobenius norm of the explicit per-location outer products."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradkit.explain import normgrad, normgrad_layer_maps


class TwoConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1, stride=2)
        self.head = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        self.a1 = torch.tanh(self.conv1(x))
        self.a1.retain_grad()
        self.z2 = self.conv2(self.a1)
        self.z2.retain_grad()
        return self.head(torch.relu(self.z2).flatten(1))


@pytest.fixture
def setting():
    torch.manual_seed(0)
    model = TwoConv().double().eval()
    x = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    target = torch.tensor([0, 3, 1])
    z1 = model.conv1(x)
    out = model(x)
    out.gather(1, target.view(-1, 1)).sum().backward()
    return model, x, target, z1.detach()


def test_identity_variant_is_the_norm_of_activation_gradient_outer_products(setting):
    model, x, target, z1 = setting
    # the gradient at conv2's output, by autograd through the retained tensors
    outer = torch.einsum("nchw,nkhw->nhwck", model.z2.grad, model.z2.detach())
    expected = outer.flatten(3).norm(dim=3)
    maps = normgrad_layer_maps(model, x, target, layers=["conv2"])
    torch.testing.assert_close(maps["conv2"], expected)


def test_conv_variant_is_the_norm_of_the_per_location_weight_gradient(setting):
    model, x, target, _ = setting
    patches = F.unfold(model.a1.detach(), 3, padding=1, stride=2)  # (N, C*9, L)
    patches = torch.cat([patches, torch.ones_like(patches[:, :1])], 1)  # the bias's constant input
    g = model.z2.grad.flatten(2)  # (N, K, L)
    per_location = torch.einsum("nkl,ncl->nlkc", g, patches)  # weight and bias gradient at each location
    # they add up to the layer's weight and bias gradients
    torch.testing.assert_close(per_location[..., :-1].sum((0, 1)), model.conv2.weight.grad.flatten(1))
    torch.testing.assert_close(per_location[..., -1].sum((0, 1)), model.conv2.bias.grad)
    expected = per_location.flatten(2).norm(dim=2).view(3, 4, 4)
    torch.testing.assert_close(normgrad_layer_maps(model, x, target, layers="conv2", variant="conv")["conv2"], expected)


def test_single_layer_at_input_resolution_and_multi_layer_aggregation(setting):
    model, x, target, _ = setting
    maps = normgrad_layer_maps(model, x, target)
    one = normgrad(model, x, target, layers=["conv1"])
    assert one.shape == x.shape and torch.equal(one[:, 0], one[:, 1])
    torch.testing.assert_close(one[:, 0], maps["conv1"])  # same resolution: upsampling is the identity
    up2 = F.interpolate(maps["conv2"].unsqueeze(1), size=(8, 8), mode="bilinear", align_corners=False)[:, 0]

    def scaled(m):
        low, high = m.flatten(1).amin(1).view(-1, 1, 1), m.flatten(1).amax(1).view(-1, 1, 1)
        return (m - low) / (high - low)

    product = normgrad(model, x, target)  # the official aggregation: the product of min-max scaled maps
    torch.testing.assert_close(product[:, 0], scaled(maps["conv1"]) * scaled(up2))
    both = normgrad(model, x, target, combine="sum", weights=[3.0, 1.0])
    torch.testing.assert_close(both[:, 0], 3 * scaled(maps["conv1"]) + scaled(up2))


def test_bad_options(setting):
    model, x, target, _ = setting
    with pytest.raises(ValueError, match="layers"):
        normgrad(model, x, target, layers=["nope"])
    with pytest.raises(ValueError, match="variant"):
        normgrad(model, x, target, variant="diag")
    with pytest.raises(ValueError, match="weights"):
        normgrad(model, x, target, weights=[1.0])
    with pytest.raises(ValueError, match="combine"):
        normgrad(model, x, target, combine="mean")
    with pytest.raises(ValueError, match="Conv2d"):
        normgrad(nn.Sequential(nn.Flatten(), nn.Linear(128, 3)).double(), x, 0)
