"""The compute dtype of Newton-Schulz ("auto"): bfloat16 only on GPUs that multiply it natively."""
import pytest
import torch

import gradkit
from gradkit.transforms import orthogonalization
from gradkit.transforms.orthogonalization import compute_dtype, newton_schulz


def test_auto_is_float32_on_cpu():
    # bf16 matmul on CPU is emulated (about 20x slower) or, with AVX512-BF16, still slower for small matrices
    assert compute_dtype("cpu") == torch.float32
    g = torch.randn(6, 4)
    assert newton_schulz(g).dtype == torch.float32
    assert newton_schulz(g, dtype=torch.float64).dtype == torch.float64
    assert newton_schulz(g, dtype=None).dtype == torch.float32


def test_auto_takes_the_devices_compute_dtype(monkeypatch):
    monkeypatch.setattr(orthogonalization, "compute_dtype", lambda device: torch.bfloat16)
    assert newton_schulz(torch.randn(5, 5)).dtype == torch.bfloat16
    assert newton_schulz(torch.randn(5, 5), dtype=torch.float32).dtype == torch.float32


def test_muon_and_trust_region_default_to_auto_and_step():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    for opt in (gradkit.optim.Muon(model.parameters()), gradkit.optim.TrustRegionMomentum(model.parameters())):
        assert all(g["ns_dtype"] == "auto" for g in opt.param_groups)
        model(torch.randn(4, 8)).sum().backward()
        opt.step()
    with pytest.raises(ValueError, match="ns_dtype"):
        gradkit.optim.Muon(model.parameters(), ns_dtype="fast")


@pytest.mark.gpu
def test_auto_keeps_bfloat16_on_cuda_with_native_bf16():
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no native bfloat16")
    assert compute_dtype("cuda") == torch.bfloat16
    assert newton_schulz(torch.randn(8, 8, device="cuda")).dtype == torch.bfloat16
