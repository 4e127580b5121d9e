"""Few-Bit Backward: exact forward, quantized derivative in the backward, packed few-bit saved tensors,
optimal levels from the dynamic programme."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from gradkit.fewbit import (ACTIVATIONS, FewBitActivation, convert_activations, fewbit_activation, fewbit_levels,
                            optimal_segments, pack_codes, unpack_codes)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_gradient_is_the_quantized_derivative_times_grad_out(activation, bits):
    torch.manual_seed(0)
    x = (2 * torch.randn(7, 33)).requires_grad_()
    g = torch.randn(7, 33)
    y = fewbit_activation(x, activation, bits)
    assert torch.equal(y, ACTIVATIONS[activation][0](x))
    y.backward(g)
    t, c = fewbit_levels(activation, bits)
    code = torch.bucketize(x.detach(), t, right=True)
    assert torch.equal(x.grad, c[code] * g)
    # and the quantized derivative is close to the true one where inputs are likely
    exact = ACTIVATIONS[activation][1](x.detach().double())
    err = (c[code].double() - exact).square().mean().sqrt()
    assert err < {1: 0.45, 2: 0.2, 4: 0.06}[bits]


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_the_only_saved_tensor_is_the_packed_code(bits):
    saved = []
    x = torch.randn(5, 13, requires_grad=True)  # 65 elements: the last byte is padded
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        FewBitActivation("gelu", bits)(x).sum().backward()
    assert len(saved) == 1
    assert saved[0].dtype == torch.uint8 and saved[0].numel() == math.ceil(65 * bits / 8)
    baseline = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: baseline.append(t) or t, lambda t: t):
        F.gelu(x).sum()
    assert sum(t.numel() * t.element_size() for t in baseline) == 65 * 4


def test_pack_round_trip_and_bad_bits():
    codes = torch.randint(0, 16, (37,))
    for bits in (1, 2, 4, 8):
        c = codes % (2 ** bits)
        assert torch.equal(unpack_codes(pack_codes(c, bits), bits, 37).long(), c)
    with pytest.raises(ValueError, match="bits must be one of"):
        FewBitActivation("gelu", 3)
    with pytest.raises(ValueError, match="activation must be one of"):
        fewbit_levels("relu6", 2)


def test_dynamic_programme_is_optimal_against_brute_force():
    torch.manual_seed(1)
    v, w = torch.randn(11, dtype=torch.float64), torch.rand(11, dtype=torch.float64)

    def error(cuts):
        bounds = [0, *cuts, 11]
        return sum(float((w[a:b] * (v[a:b] - (w[a:b] * v[a:b]).sum() / w[a:b].sum()) ** 2).sum())
                   for a, b in zip(bounds, bounds[1:]))

    brute = min(error(c) for c in itertools.combinations(range(1, 11), 3))
    cuts, best = optimal_segments(v, w, 4)
    assert best == pytest.approx(brute, rel=1e-9) and error(cuts) == pytest.approx(brute, rel=1e-9)


def test_optimal_levels_beat_uniform_boundaries_and_each_level_is_the_interval_mean():
    x = torch.linspace(-8, 8, 20001, dtype=torch.float64)
    w = torch.exp(-0.5 * x * x)
    d = ACTIVATIONS["gelu"][1](x)
    t, c = fewbit_levels("gelu", 2)
    code = torch.bucketize(x, t.double(), right=True)
    optimal = (w * (d - c.double()[code]) ** 2).sum()
    uniform_t = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)  # evenly spaced, best levels for them
    ucode = torch.bucketize(x, uniform_t, right=True)
    means = torch.stack([(w * d)[ucode == k].sum() / w[ucode == k].sum() for k in range(4)])
    assert optimal < (w * (d - means[ucode]) ** 2).sum()
    for k in range(4):
        mean = (w * d)[code == k].sum() / w[code == k].sum()
        assert float(c[k]) == pytest.approx(float(mean), abs=2e-3)


def test_convert_activations_replaces_and_refuses_tanh_gelu_untouched():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.SiLU(), torch.nn.Linear(4, 4), torch.nn.GELU())
    assert convert_activations(net, 2) == ["1", "3"]
    assert isinstance(net[1], FewBitActivation) and net[1].activation == "silu"
    bad = torch.nn.Sequential(torch.nn.SiLU(), torch.nn.GELU(approximate="tanh"))
    with pytest.raises(ValueError, match="approximate='tanh'"):
        convert_activations(bad, 2)
    assert isinstance(bad[0], torch.nn.SiLU)
