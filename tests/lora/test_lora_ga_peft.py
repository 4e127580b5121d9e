"""LoRA-GA against peft's (``init_lora_weights="lora_ga"``): the same singular directions in A and B.

peft scales differently from the paper's Algorithm 1 followed here (it multiplies ``B`` by the singular
values ``S[r:2r]`` and applies the stable factor to ``B`` only), so the comparison is of the subspaces:
the row space of ``A`` (``V[:, :r]``) and the column space of ``B`` (``U[:, r:2r]``).
"""
import copy

import pytest
import torch
from torch import nn

from gradkit.lora import apply_lora, lora_ga_init

peft = pytest.importorskip("peft", reason="peft is an optional reference, not a dependency (it needs transformers)")


def _projector(rows):
    q = torch.linalg.qr(rows.T.double()).Q
    return q @ q.T


@pytest.mark.slow  # importing peft imports transformers (about 10 s)
def test_directions_match_peft():
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.config import LoraGAConfig
    from peft.tuners.lora.loraga import preprocess_loraga

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 12), nn.Tanh(), nn.Linear(12, 8))
    x, y = torch.randn(32, 10), torch.randn(32, 8)
    ours = copy.deepcopy(net)
    apply_lora(ours, rank=2, alpha=4)
    lora_ga_init(ours, lambda m, b: (m(b[0]) - b[1]).square().mean(), [(x, y)])

    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"], init_lora_weights="lora_ga",
                     lora_ga_config=LoraGAConfig())
    with pytest.warns(UserWarning):  # peft's full backward hook on inputs without grad
        preprocess_loraga(net, cfg, lambda: (net(x) - y).square().mean().backward())
    theirs = get_peft_model(net, cfg)
    for i in (0, 2):
        layer = theirs.base_model.model[i]
        a, b = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
        torch.testing.assert_close(_projector(ours[i].lora_A.detach()), _projector(a), atol=1e-3, rtol=0)
        torch.testing.assert_close(_projector(ours[i].lora_B.detach().T), _projector(b.T), atol=1e-3, rtol=0)
