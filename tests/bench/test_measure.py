import torch

import gradkit
from gradkit.bench.measure import state_bytes, tensor_bytes


def _trained(opt_cls, **kw):
    p = [torch.nn.Parameter(torch.randn(10, 3)), torch.nn.Parameter(torch.randn(5))]
    opt = opt_cls(p, **kw)
    sum((x ** 2).sum() for x in p).backward()
    opt.step()
    return opt


def test_torch_adam_state_is_two_moments_and_step():
    opt = _trained(torch.optim.Adam, lr=0.1)
    step_bytes = sum(s["step"].numel() * s["step"].element_size() for s in opt.state.values())
    assert state_bytes(opt) == 2 * 35 * 4 + step_bytes


def test_sgd_without_momentum_has_no_tensor_state():
    assert state_bytes(_trained(torch.optim.SGD, lr=0.1)) == 0


def test_nested_containers_and_shared_tensors_count_once():
    t = torch.zeros(4, dtype=torch.float64)
    nested = {"a": [t, (torch.zeros(2, dtype=torch.float16), {"b": t})], "c": 3.0, "d": {torch.zeros(1)}}
    assert tensor_bytes(nested) == 32 + 4 + 4


def test_own_state_bytes_method_wins():
    class Counted(torch.optim.SGD):
        def state_bytes(self):
            return 1234

    assert state_bytes(_trained(Counted, lr=0.1, momentum=0.9)) == 1234


def test_torchao_quantized_states_count_their_codes_scales_and_maps():
    import pytest

    ao = pytest.importorskip("torchao.optim", reason="torchao is not installed (pip install torchao)")
    w = torch.nn.Parameter(torch.randn(64, 128))  # 8192 elements, quantized (torchao keeps < 4096 in float32)
    opt = ao.AdamW8bit([w], block_size=256)
    w.grad = torch.randn_like(w)
    opt.step()
    step = opt.state[w]["step"]
    # two moments: 8192 uint8 codes, 32 float32 block scales, a 256-entry float32 map each
    assert state_bytes(opt) == 2 * (8192 + 32 * 4 + 256 * 4) + step.numel() * step.element_size()
    assert gradkit.state_bytes(opt) == 2 * (8192 + 32 * 4 + 256 * 4)  # the library counts no step counters
