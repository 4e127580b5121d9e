"""One 2D pLSTM layer against the official PyTorch implementation, with the same weights.

The official code (https://github.com/ml-jku/plstm) is not on PyPI. To run this test, install its source
next to its two small dependencies (they need no others), e.g.
``pip install --no-deps --target /tmp/plstm_ref compoconf einops <checkout of ml-jku/plstm>`` and run
pytest with ``PYTHONPATH=/tmp/plstm_ref:src``. The configuration is the paper's vision layer (scalar
state tracking, dense q/k/v, input-dependent Source/Transition/Mark gates, no convolution or pass-through)
with one orientation, because the official layer's y-flip never triggers (see gradkit.models.plstm).
"""
import pytest
import torch

official = pytest.importorskip("plstm.torch.plstm_2d_layer", reason="the official plstm package is not installed "
                               "(it is not on PyPI; see this file's docstring)")
from plstm.config.longrange_transition_layer import LongRangeTransitionLayerConfig  # noqa: E402
from plstm.config.plstm_2d_layer import pLSTM2DLayerConfig  # noqa: E402
from plstm.config.query_key_value import KeyLayerConfig, QueryLayerConfig, ValueLayerConfig  # noqa: E402
from plstm.config.source_mark_layer import MarkLayerConfig, SourceLayerConfig  # noqa: E402

from gradkit.models import PLSTM2D  # noqa: E402

DIM, HEADS = 8, 2


def _official_layer(mode: str):
    f32 = dict(dtype="float32", param_dtype="float32")
    gate = dict(input_dim=DIM, num_heads=HEADS, sub_heads=HEADS, weight=True, **f32)
    qkv = dict(input_dim=DIM, num_heads=HEADS, sub_heads=1, **f32)
    config = pLSTM2DLayerConfig(
        mode=mode, input_dim=DIM, num_heads=HEADS, orientation_combinations=[0], additional_convolution=False,
        additional_passthrough=False, source=SourceLayerConfig(**gate), mark=MarkLayerConfig(**gate),
        transition=LongRangeTransitionLayerConfig(input_dim=DIM, num_heads=HEADS, sub_heads=HEADS, transition_dim=1, **f32),
        query=QueryLayerConfig(DK=DIM // HEADS, **qkv), key=KeyLayerConfig(DK=DIM // HEADS, **qkv),
        value=ValueLayerConfig(DV=DIM // HEADS, **qkv), **f32)
    layer = official.pLSTM2DLayer(config)
    layer.reset_parameters()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return layer


def _copy_weights(src, dst: PLSTM2D, mode: str) -> None:
    gate_pairs = {"P": [("source", "source"), ("mark", "mark")],
                  "D": [("source_r", "source_r"), ("source_d", "source_d"), ("mark_l", "mark_l"), ("mark_u", "mark_u")]}[mode]
    transitions = {"P": [("transition", "transition")],
                   "D": [("transition_r", "transition_r"), ("transition_d", "transition_d"), ("transition_rd", "transition_cross")]}[mode]
    with torch.no_grad():
        for theirs, ours in gate_pairs:
            getattr(dst, ours).bias.copy_(getattr(src, theirs).bias.reshape(-1))
            getattr(dst, ours).weight.copy_(getattr(src, theirs).weight.reshape(getattr(dst, ours).weight.shape))
        for theirs, ours in transitions:
            getattr(dst, ours).bias.copy_(getattr(src, theirs).eigenvalues_bias.reshape(-1))
            getattr(dst, ours).weight.copy_(getattr(src, theirs).eigenvalues_weight.reshape(getattr(dst, ours).weight.shape))
        if mode == "P":
            dst.orientation_bias.copy_(src.orientation_bias.reshape(-1))
            dst.orientation_weight.copy_(src.orientation_weight.reshape(dst.orientation_weight.shape))
        dst.direct.bias.copy_(src.direct.bias.reshape(-1))
        for theirs, ours in (("query", "query"), ("key", "key"), ("value_", "value")):
            getattr(dst, ours).weight.copy_(getattr(src, theirs).weight.reshape(DIM, DIM))
            getattr(dst, ours).bias.copy_(getattr(src, theirs).bias.reshape(DIM))
        dst.norm.weight.copy_(src.mhnorm.scale)
        dst.out.weight.copy_(src.outprojection.weight)


@pytest.mark.parametrize("mode", ["P", "D"])
@pytest.mark.parametrize("size", [(4, 4), (8, 8), (6, 5)])
def test_forward_matches_the_official_layer(mode, size):
    torch.manual_seed(0)
    theirs = _official_layer(mode)
    ours = PLSTM2D(DIM, HEADS, mode=mode, orientations=(0,), normalization="official")
    _copy_weights(theirs, ours, mode)
    x = torch.randn(2, *size, DIM)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
