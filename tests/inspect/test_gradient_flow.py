"""Gradient flow over distance and depth, and pLSTM's bounded propagation."""
import pytest
import torch
from torch import nn

from gradkit.inspect import block_gradient_norms, distance_profile, input_gradient_map, plot_gradient_flow
from gradkit.models import PLSTM1D, PLSTM2D


def test_input_gradient_map_of_a_linear_model_is_its_weights():
    torch.manual_seed(0)
    lin = nn.Linear(12, 3)
    x = torch.randn(2, 4, 3)  # a sequence of 4 positions with 3 features
    model = lambda t: lin(t.flatten(1))  # noqa: E731
    out = input_gradient_map(model, x, target=torch.tensor([0, 2]))
    expected = torch.stack([lin.weight[0].view(4, 3).norm(dim=-1), lin.weight[2].view(4, 3).norm(dim=-1)])
    torch.testing.assert_close(out, expected)
    assert lin.weight.grad is None  # nothing written into .grad


def test_input_gradient_map_at_a_position_is_the_jacobian_norm():
    torch.manual_seed(1)
    mix = torch.randn(5, 5)  # out[:, i] = sum_j mix[i, j] * x[:, j] (features 2 -> 2, shared)
    w = torch.randn(2, 2)
    model = lambda t: torch.einsum("ij,bjd,ed->bie", mix, t, w)  # noqa: E731
    x = torch.randn(3, 5, 2)
    out = input_gradient_map(model, x, position=(4,))
    # d out[4] / d x[j] = mix[4, j] * w, so its Frobenius norm is |mix[4, j]| * ||w||_F.
    torch.testing.assert_close(out, (mix[4].abs() * w.norm()).expand(3, 5))


def test_images_are_reduced_per_patch():
    conv = nn.Conv2d(1, 2, 4, stride=4)
    model = lambda t: conv(t).flatten(1)[:, :2]  # noqa: E731 - logits read only the top-left patch
    out = input_gradient_map(model, torch.randn(2, 1, 8, 8), target=0, patch_size=4)
    assert out.shape == (2, 2, 2)
    assert out[:, 0, 0].gt(0).all() and out[:, 0, 1:].eq(0).all() and out[:, 1].eq(0).all()


def test_distance_profile():
    grid = torch.arange(9.0).view(1, 3, 3)
    d, v = distance_profile(grid, (0, 0))
    assert d.tolist() == [0, 1, 2, 3, 4]
    assert v.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]  # (1+3)/2, (2+4+6)/3, (5+7)/2
    d, v = distance_profile(grid, (0, 0), reduce="max", metric="chebyshev")
    assert v.tolist() == [0.0, 4.0, 8.0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="layout must be one of"):
        input_gradient_map(lambda t: t.sum(1), torch.randn(2, 3), layout="volume")
    with pytest.raises(ValueError, match="either target .* or position"):
        input_gradient_map(lambda t: t, torch.randn(2, 3, 4), target=0, position=(1,))
    with pytest.raises(ValueError, match="reduce must be 'mean' or 'max'"):
        distance_profile(torch.ones(3, 3), (0, 0), reduce="median")


def test_block_gradient_norms_over_depth():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    norms = block_gradient_norms(model, torch.randn(8, 4), lambda out: out.sum())
    assert [n for n, _ in norms] == ["0", "1", "2"]
    assert norms[-1][1] == pytest.approx(8 ** 0.5)  # d sum / d out = ones(8, 1)
    assert all(p.grad is None for p in model.parameters())


def test_plot_gradient_flow(tmp_path):
    maps = {"a": torch.rand(2, 4, 4), "b": torch.rand(2, 4, 4)}
    path = plot_gradient_flow(maps, torch.rand(8, 8), tmp_path / "flow.png", machine="test")
    assert path.stat().st_size > 0


# --- bounded propagation ------------------------------------------------------------------------------
def _hold_random_gates(layer: nn.Module, context: torch.Tensor, generator: torch.Generator, transition_bias: float):
    """Random gate values at every position, held fixed: the gates are computed once from a random
    ``context`` through random weights and then no longer depend on the layer's input, so the input
    gradient at distance d is the propagation through d edges (Mark x Transitions x Source), not the
    gates' own sensitivity. Transition pre-activations are about ``transition_bias +- 0.2``; P-mode
    orientations keep the paper's parametrisation: a bias per head spread over [-2, 2] (one preferred
    direction per head, so that the heads together cover the grid) and a small input-dependent term."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("transition"):
                if name.endswith("bias"):
                    p.fill_(transition_bias)
                else:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.2 / p.shape[-1] ** 0.5)
            elif name == "orientation_weight" or (name.startswith(("source", "mark")) and name.endswith("weight")):
                p.copy_(torch.randn(p.shape, generator=generator))
        fixed = layer.gates(context)
    layer.gates = lambda _x: dict(fixed)  # the instance attribute shadows the method


def _decay(layer, x, origin):
    flow = input_gradient_map(layer, x, position=origin, layout="grid" if x.ndim == 4 else "sequence")
    d, v = distance_profile(flow, origin)
    return v[1:] / v[1]  # relative to distance 1


@pytest.mark.parametrize("normalization", ["paper", "none"])
def test_1d_propagation_is_bounded_only_with_the_normalisation(normalization):
    torch.manual_seed(0)  # the layer's q, k, v weights
    g = torch.Generator().manual_seed(3)
    layer = PLSTM1D(8, 1, chunk_size=64, normalization=normalization)
    # Pre-activations about 1.4 +- 0.2: tanh(5 .) maps them into about [0.9999, 1]; unbounded they compound.
    _hold_random_gates(layer, torch.randn(1, 64, 8, generator=g), g, 1.4)
    rel = _decay(layer, torch.randn(1, 64, 8, generator=g), (63,))
    bounded = bool(rel.min() > 1e-6 and rel.max() < 1e6)
    assert bounded == (normalization == "paper"), (rel.min().item(), rel.max().item())


@pytest.mark.parametrize("mode", ["P", "D"])
@pytest.mark.parametrize("normalization", ["paper", "none"])
def test_2d_propagation_is_bounded_only_with_the_normalisation(mode, normalization):
    torch.manual_seed(0)  # the layer's q, k, v weights
    g = torch.Generator().manual_seed(4)
    layer = PLSTM2D(8, 4, mode=mode, orientations=(0,), normalization=normalization)
    # Pre-activations about 0.9 +- 0.2: tanh(5 .) gives Transitions mostly in [0.95, 1]; unnormalised, the
    # same values (P-mode: independent r and d Transitions; D-mode: both crossing Transitions) compound
    # over the number of lattice paths.
    _hold_random_gates(layer, torch.randn(1, 32, 32, 8, generator=g), g, 0.9)
    rel = _decay(layer, torch.randn(1, 32, 32, 8, generator=g), (31, 31))
    bounded = bool(rel.min() > 1e-6 and rel.max() < 1e6)
    assert bounded == (normalization == "paper"), (rel.min().item(), rel.max().item())
