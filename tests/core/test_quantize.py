"""Blockwise codecs (gradkit.core.quantize): round-trip error within each map's bound."""
import pytest
import torch

from gradkit.core.quantize import (MAPS, decode, decode_ecc, encode, encode_ecc, encode_with_scales, error_bound,
                                   flagged_scales)


def _cases(signed: bool):
    g = torch.Generator().manual_seed(0)
    for size in (1, 7, 256, 1000):
        for scale in (1e-30, 1e-3, 1.0, 1e20):
            x = torch.randn(size, generator=g) * scale
            yield x if signed else x.abs()
    yield torch.zeros(600)  # all-zero blocks
    spike = torch.full((512,), 1e-3)
    spike[100] = 1e4  # a single outlier in its block
    yield spike if not signed else spike * torch.sign(torch.randn(512, generator=g))
    yield torch.full((300,), 1e-40)  # denormals
    yield torch.randn(64, generator=g).exp() ** 3


@pytest.mark.parametrize("name", sorted(MAPS))
@pytest.mark.parametrize("block", [2, 64, 256])
def test_round_trip_error_within_the_bound_of_every_block(name, block):
    signed = MAPS[name][1]
    for x in _cases(signed):
        codes, scales = encode(x, name, block)
        y = decode(codes, scales, name, x.numel())
        pad = (-x.numel()) % block
        xb = torch.cat([x, x.new_zeros(pad)]).view(-1, block)
        yb = torch.cat([y, y.new_zeros(pad)]).view(-1, block)
        bound = xb.abs().amax(1, keepdim=True) * error_bound(name) * (1 + 1e-5) + 1e-45
        assert ((xb - yb).abs() <= bound).all(), (name, block, x[:4])
        assert (yb[xb.abs().amax(1) == 0] == 0).all()  # an all-zero block decodes to zeros
        if not signed:
            assert (y >= 0).all()


@pytest.mark.parametrize("name", sorted(MAPS))
def test_non_finite_values_are_refused_by_name(name):
    for bad in (float("nan"), float("inf")):
        x = torch.ones(10)
        x[3] = bad
        with pytest.raises(ValueError, match="exp_avg holds inf or nan"):
            encode(x, name, 4, what="exp_avg")
    with pytest.raises(ValueError, match="map must be one of"):
        encode(torch.ones(4), "int3", 4)
    with pytest.raises(ValueError, match="block must be"):
        encode(torch.ones(4), name, 3)


def test_sqrt_maps_refuse_negative_values():
    with pytest.raises(ValueError, match="negative"):
        encode(torch.tensor([1.0, -1.0]), "sqrt8", 2)


@pytest.mark.parametrize("name", sorted(MAPS))
def test_flagged_scales_and_their_codes_are_the_checked_encode(name):
    signed = MAPS[name][1]
    for x in _cases(signed):
        codes, scales = encode(x, name, 64)
        flagged, ok = flagged_scales(x, name, 64)
        assert bool(ok) and torch.equal(flagged, scales)
        assert torch.equal(encode_with_scales(x, flagged, name, 64), codes)
    bad = [float("nan"), float("inf")] + ([] if signed else [-1.0])
    for value in bad:
        x = torch.ones(300)
        x[250] = value  # in the last, partial block
        assert not bool(flagged_scales(x, name, 64)[1]), value


def _ecc_unit(hi):
    return hi.float().abs().clamp(min=2.0 ** -111) * (2.0 ** -8 / 127)


def test_ecc_is_within_half_its_unit():
    g = torch.Generator().manual_seed(1)
    for scale in (1e-30, 1e-3, 1.0, 1e30):
        x = torch.randn(4096, generator=g) * scale
        hi, code = encode_ecc(x)
        y = decode_ecc(hi, code)
        # half a unit, and the float32 rounding of the decoded value
        assert ((x - y).abs() <= _ecc_unit(hi) / 2 + x.abs() * 2.0 ** -24).all()
        assert (x - y).abs().max() < (x - hi.float()).abs().max() / 64  # far better than bf16 alone
    with pytest.raises(ValueError, match="inf or nan"):
        encode_ecc(torch.tensor([float("nan")]))


def test_ecc_codes_fit_int8_at_every_bf16_neighbourhood():
    """Every finite bfloat16 value and points between it and the next one (ties, which round to even, and
    their neighbours): the correction stays in [-127, 127] (no clamp guards the int8 conversion) and the
    decoded value within half a unit, subnormals included."""
    every = torch.arange(1 << 16, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)
    up = torch.nextafter(every, torch.tensor(float("inf"), dtype=torch.bfloat16)).float()
    a, gap = every.float(), up - every.float()
    keep = torch.isfinite(a) & torch.isfinite(up)
    a, gap = a[keep], gap[keep]
    tie = a + gap / 2
    x = torch.cat([a, tie, torch.nextafter(tie, a), torch.nextafter(tie, a + gap), a + gap / 4, a + gap * 3 / 4])
    hi, code = encode_ecc(x)
    assert int(code.min()) >= -127 and int(code.max()) <= 127
    assert ((x - decode_ecc(hi, code)).abs() <= _ecc_unit(hi) / 2 + x.abs() * 2.0 ** -24).all()


def test_4bit_codes_pair_each_element_with_the_one_half_a_block_on():
    """Byte j of a block holds element j in its low nibble and element j + block/2 in its high one (whole
    halves, which compiled loops read and write contiguously)."""
    x = torch.tensor([1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0])  # signed4 levels: +1 -> 14, 0 -> 7, -1 -> 0
    codes, _ = encode(x, "signed4", block=8)
    assert codes.tolist() == [[14 | (0 << 4), 7 | (7 << 4), 7 | (7 << 4), 7 | (7 << 4)]]
    assert torch.equal(decode(codes, torch.ones(1), "signed4", 8), x)
