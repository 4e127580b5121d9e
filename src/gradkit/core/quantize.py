"""Blockwise codecs for low-bit optimizer state: quantization maps and their encode/decode passes.

A flat float tensor is padded to a whole number of blocks of ``block`` elements, viewed as
``(blocks, block)`` and each block is coded against its own absolute maximum (the scale). The codes are
a 2-D tensor ``(blocks, bytes per block)`` and the scales a float32 vector ``(blocks,)``, so a stored
state describes its own block size (``codes.shape[1]``, doubled for 4-bit codes that pack two per byte:
the low nibble of byte ``j`` codes the block's element ``j``, the high nibble its element ``j + block / 2``,
so that packing and unpacking read and write whole contiguous halves, which compiled loops vectorize).

Maps (``y = |x| / absmax`` in [0, 1] per block):

- ``"signed8"``: linear, ``code = round(127 x / absmax)`` in [-127, 127] (int8). Error <= absmax / 254.
- ``"signed4"``: companded (a dynamic map with finer levels near zero), levels ``+-(k/7)^2``, k = 0..7,
  ``k = round(7 sqrt(y))``; stored as ``sign * k + 7`` in a nibble. Error <= absmax / 7.
- ``"sqrt8"`` / ``"sqrt4"`` (non-negative values, second moments): linear in the square-root domain with
  zero excluded, ``sqrt(x) ~ (c + 1) / L * max sqrt(x)``, c = 0..L-1 (L = 256 / 16): the denominator
  ``sqrt(v)`` of an Adam-type update is what is coded, and a coded second moment is never 0 inside a
  block that holds a non-zero value, so an update cannot blow up through a value rounded to zero.
  Error <= absmax * (2/L + 1/L^2).

``bfloat16+ecc`` keeps ``hi = bf16(x)`` and an int8 correction ``e = round((x - hi) / u)`` in units
``u = max(|hi|, 2^-111) 2^-8 / 127``; ``hi + e u`` is within ``u / 2`` of ``x``: ``|hi| 2^-8 / 254`` (about 16
significant bits), ``2^-120 / 127`` where ``|hi| < 2^-111``. The unit is arithmetic in ``hi``, not its
exponent bits: the compiled step vectorizes it, where bit casts next to bfloat16 loads run element by element.

References: Dettmers et al., "8-bit Optimizers via Block-wise Quantization", ICLR 2022, arXiv:2110.02861
(https://github.com/bitsandbytes-foundation/bitsandbytes); Li et al., "Memory Efficient Optimizers with
4-bit States", NeurIPS 2023, arXiv:2309.01507 (https://github.com/thu-ml/low-bit-optimizers; the
zero-excluded linear map for second moments). Deviations: the signed 8-bit map is linear rather than
the dynamic tree map (one multiply and round instead of a search), and the 4-bit signed map is the
power-2 compander above rather than a searched table; both have the closed-form bounds stated.

>>> x = torch.tensor([0.5, -1.0, 0.25, 0.0])
>>> codes, scales = encode(x, "signed8", block=4)
>>> decode(codes, scales, "signed8", 4)
tensor([ 0.5039, -1.0000,  0.2520,  0.0000])
>>> codes.dtype, tuple(codes.shape), tuple(scales.shape)
(torch.int8, (1, 4), (1,))
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["MAPS", "encode", "flagged_scales", "encode_with_scales", "decode", "error_bound", "code_shape",
           "encode_ecc", "decode_ecc", "ecc_storable", "check_ecc", "check_finite", "block_scales", "encode_scaled",
           "integer_codes"]

_TINY = torch.finfo(torch.float32).tiny * torch.finfo(torch.float32).eps  # the smallest positive float32

#: map name -> (bits, signed)
MAPS = {"signed8": (8, True), "signed4": (4, True), "sqrt8": (8, False), "sqrt4": (4, False)}


def _check_map(name: str) -> tuple[int, bool]:
    if name not in MAPS:
        raise ValueError(f"map must be one of {sorted(MAPS)}, got {name!r}")
    return MAPS[name]


def code_shape(numel: int, name: str, block: int) -> tuple[tuple[int, int], tuple[int]]:
    """Shapes of the codes and the scales that code ``numel`` values: ``((blocks, bytes), (blocks,))``.

    >>> code_shape(1000, "sqrt4", 256)
    ((4, 128), (4,))
    """
    bits, _ = _check_map(name)
    blocks = max(1, math.ceil(numel / block))
    return (blocks, block * bits // 8), (blocks,)


def check_finite(scales: Tensor, what: str = "x", negatives: str | None = None) -> None:
    """Raise ``ValueError`` when a block scale is inf or nan (one host sync); ``negatives``: the name of the
    non-negative map whose scales a negative value also makes nan (the values were not checked for them)."""
    if scales.numel() and not bool(torch.isfinite(scales).all()):
        detail = f" (or negative values, which the map {negatives!r} cannot code)" if negatives else ""
        raise ValueError(f"{what} holds inf or nan{detail}, which a quantized state cannot represent; the stored "
                         "state is unchanged")


def _blocks(x: Tensor, block: int) -> Tensor:
    flat = x.reshape(-1).float()
    pad = (-flat.numel()) % block if flat.numel() else block
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return flat.view(-1, block)


def _copied(x: Tensor, block: int) -> bool:
    """Whether :func:`_blocks` gives a padded or converted copy of ``x``, which the encode may overwrite."""
    return x.dtype != torch.float32 or x.numel() % block != 0 or x.numel() == 0


def encode(x: Tensor, name: str, block: int = 256, *, what: str = "x") -> tuple[Tensor, Tensor]:
    """Code ``x`` (any shape, read flat) blockwise with map ``name``: ``(codes, scales)``. The steps code
    their state with the pieces of this function (:func:`block_scales`, :func:`encode_scaled`,
    :func:`integer_codes`; in the fused program :func:`flagged_scales`, :func:`encode_with_scales`).

    Args:
        x: floating tensor; non-finite values raise ``ValueError`` naming ``what``; ``sqrt`` maps need
            ``x >= 0`` (negative values raise ``ValueError``).
        name: ``"signed8" | "signed4" | "sqrt8" | "sqrt4"``.
        block: elements per block (even, >= 2).
    Returns:
        codes ``(blocks, block * bits / 8)`` (int8 for 8-bit maps, uint8 nibbles for 4-bit maps) and
        float32 scales ``(blocks,)`` (the block's absmax, of ``sqrt(x)`` for ``sqrt`` maps).

    >>> codes, scales = encode(torch.tensor([4.0, 1.0, 0.0, 0.0]), "sqrt4", block=4)
    >>> decode(codes, scales, "sqrt4", 4)
    tensor([4.0000, 1.0000, 0.0156, 0.0156])
    """
    bits, signed = _check_map(name)
    if not isinstance(block, int) or block < 2 or block % 2:
        raise ValueError(f"block must be an even int >= 2, got {block!r}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got {x.dtype}")
    xb = _blocks(x, block)
    if not signed and xb.numel() and bool((xb.amin(1) < 0).any()):
        raise ValueError(f"{what} holds negative values, which the non-negative map {name!r} cannot code")
    scales = block_scales(xb, name)
    codes = integer_codes(encode_scaled(xb, scales, name, _copied(x, block)), bits, signed)
    check_finite(scales, what)
    return codes, scales


def flagged_scales(x: Tensor, name: str, block: int) -> tuple[Tensor, Tensor]:
    """The block scales :func:`encode` would give ``x`` and a 0-dim bool tensor, false when ``x`` holds inf or
    nan or (``sqrt`` maps) a negative value: no checks or host syncs, for the fused step to trace (its
    codes are then :func:`encode_with_scales`).

    Written for a compiled program rather than for eager passes: one reduction of ``|x|`` for signed maps,
    and for ``sqrt`` maps the negative values tested per tensor instead of being folded into each block's
    scale, which would cost a select per block inside the compiled loops (same scales as
    :func:`block_scales` wherever the flag is true).

    >>> scales, ok = flagged_scales(torch.tensor([4.0, -1.0]), "sqrt8", 2)
    >>> bool(ok)
    False
    """
    _, signed = _check_map(name)
    xb = _blocks(x, block)
    if signed:
        scales = xb.abs().amax(1)
        return scales, torch.isfinite(scales).all()
    scales = xb.amax(1).sqrt()
    return scales, torch.isfinite(scales).all() & (xb.amin(1) >= 0).all()


def encode_with_scales(x: Tensor, scales: Tensor, name: str, block: int) -> Tensor:
    """The codes of ``x`` (read flat, blockwise) against ``scales`` (:func:`flagged_scales`), as :func:`encode`
    stores them; no checks."""
    bits, signed = _check_map(name)
    return integer_codes(encode_scaled(_blocks(x, block), scales, name, consume=_copied(x, block)), bits, signed)


def block_scales(xb: Tensor, name: str) -> Tensor:
    """The scale of each block (row) of the float32 blocks ``xb`` under map ``name``: ``max |x|`` for signed
    maps, ``sqrt(max x)`` (= ``max sqrt(x)``, sqrt being monotone) for sqrt maps; inf or nan where a block
    holds inf or nan, or (sqrt maps) a negative value. Reads ``xb`` only: two reductions, no per-element
    square root."""
    _, signed = _check_map(name)
    # two plain reductions: aminmax(dim=1) on CPU is an order of magnitude slower than amax + amin
    if signed:
        return torch.maximum(xb.amax(1), xb.amin(1).neg_())
    return torch.where(xb.amin(1) < 0, float("nan"), xb.amax(1)).sqrt_()


def encode_scaled(xb: Tensor, scales: Tensor, name: str, consume: bool = False) -> Tensor:
    """The codes of the float32 blocks ``xb`` against ``scales`` (:func:`block_scales`) as integer-valued
    floats: ``round(127 x / scale)`` (signed8), the companded nibble level ``sign k + 7`` (signed4), or
    ``clamp(round(L sqrt(x) / scale), 1, L) - 1`` (sqrt maps; less 128 for int8). ``consume``: ``xb`` is
    overwritten."""
    bits, signed = _check_map(name)
    if signed:
        # divide (not multiply by 1/scale, which overflows for blocks of denormals); all-zero blocks give 0
        y = (xb.div_ if consume else xb.div)(scales.clamp_min(_TINY).unsqueeze(1))
        if bits == 8:
            return y.mul_(127.0).round_()
        k = y.abs().sqrt_().mul_(7.0).round_()
        return k.copysign_(y).add_(7.0)
    y = xb.sqrt_() if consume else xb.sqrt()  # a negative value gives nan, which the scale carries
    levels = float(1 << bits)
    # L / scale folded into one divisor: a nonzero scale of a sqrt map is at least 2^-74.5 (the root of the
    # smallest float32), so scale / L is exact and the quotient is the one dividing and then scaling gives
    y.div_((scales / levels).clamp_min(_TINY).unsqueeze(1)).round_().clamp_(1.0, levels)
    return y.sub_(1.0 + (128.0 if bits == 8 else 0.0))


def integer_codes(y: Tensor, bits: int, signed: bool) -> Tensor:
    """The stored codes of :func:`encode_scaled`'s values: int8, or two 4-bit levels per uint8 (element ``j``
    of a block in the low nibble of byte ``j``, element ``j + block / 2`` in the high one)."""
    codes = y.to(torch.int8 if bits == 8 else torch.uint8)
    if bits == 4:
        half = codes.shape[1] // 2
        codes = codes[:, :half] | (codes[:, half:] << 4)
    return codes


def decode(codes: Tensor, scales: Tensor, name: str, numel: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The flat values of ``numel`` elements that ``(codes, scales)`` code with map ``name`` (see :func:`encode`).

    >>> codes, scales = encode(torch.tensor([0.3, -0.6]), "signed4", block=2)
    >>> decode(codes, scales, "signed4", 2)
    tensor([ 0.3061, -0.6000])
    """
    bits, signed = _check_map(name)
    if bits == 4:
        codes = torch.cat([codes & 15, codes >> 4], dim=1)
    # a plain conversion first, then in-place float ops: on CPU a binary op that promotes int8 to float
    # is several times slower than the conversion and the float op together
    step = scales.to(dtype).unsqueeze(1)
    out = codes.to(dtype)
    if signed and bits == 8:
        out.mul_(step / 127.0)
    elif signed:
        out.sub_(7.0)
        out.mul_(out.abs()).mul_(step / 49.0)
    else:
        # (c + 1) levels (c + 129 for int8 codes, offset by -128), squared; integer sums are exact in float
        out.add_(129.0 if bits == 8 else 1.0).mul_(step / float(1 << bits))
        out.mul_(out)
    return out.view(-1)[:numel]


def error_bound(name: str) -> float:
    """Largest ``|x - decode(encode(x))|`` of a block, as a fraction of the block's ``absmax(|x|)``.

    >>> round(error_bound("signed8"), 6)
    0.003937
    """
    bits, signed = _check_map(name)
    if signed:
        return 0.5 / 127 if bits == 8 else 1 / 7
    levels = float(1 << bits)
    return 2 / levels + 1 / levels ** 2


_BF16_OVERFLOW = float.fromhex("0x1.ff0p+127")  # halfway between bfloat16's largest finite value and infinity
_ECC_FLOOR = 2.0 ** -111  # the unit stays a normal float32 below it (2^-119 / 127 > 2^-126)
# bfloat16 rounds to within half an ulp, and an ulp is at most 2^-7 of the value: |x - bf16(x)| <= |bf16(x)| 2^-8,
# so in these units |e| <= 127 and the int8 conversion needs no clamp
_ECC_STEP = 2.0 ** -8 / 127


def _ecc_unit(hi: Tensor) -> Tensor:
    """The correction's unit for the float32 values ``hi`` of bfloat16 numbers, in place on ``hi``."""
    return hi.abs_().clamp_min_(_ECC_FLOOR).mul_(_ECC_STEP)


def ecc_storable(x: Tensor) -> Tensor:
    """A 0-dim bool tensor, true when every value of ``x`` is finite and rounds to a finite bfloat16 (two
    reductions, no host sync: the extremes carry any nan)."""
    return (torch.stack([x.amax(), x.amin()]).abs() < _BF16_OVERFLOW).all()


def check_ecc(x: Tensor, what: str = "x") -> None:
    """Raise ``ValueError`` naming ``what`` unless ``x`` can be stored as bfloat16+ecc (one host sync)."""
    if x.numel() and not bool(ecc_storable(x)):
        raise ValueError(f"{what} holds inf or nan (or values beyond bfloat16's range), which a bfloat16+ecc state "
                         "cannot represent; the stored state is unchanged")


def encode_ecc(x: Tensor, *, what: str = "x", check: bool = True, consume: bool = False) -> tuple[Tensor, Tensor]:
    """``(hi, correction)``: ``x`` rounded to bfloat16 and an int8 code of what the rounding lost.

    ``check=False`` skips the check that ``x`` can be stored (:func:`check_ecc`), for a caller that made it;
    ``consume``: a float32 ``x`` is overwritten. Compiled, ``hi``'s rounding must be kept (Inductor's
    ``emulate_precision_casts``), else ``x - hi`` is taken as 0.

    >>> hi, e = encode_ecc(torch.tensor([1.0 + 2 ** -10]))
    >>> hi, e, decode_ecc(hi, e) - 1.0
    (tensor([1.], dtype=torch.bfloat16), tensor([32], dtype=torch.int8), tensor([0.0010]))
    """
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got {x.dtype}")
    x = x.float()
    if check:
        check_ecc(x, what)
    hi = x.to(torch.bfloat16)
    unit = hi.float()
    rest = x.sub_(unit) if consume else x - unit
    return hi, rest.div_(_ecc_unit(unit)).round_().to(torch.int8)


def decode_ecc(hi: Tensor, code: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``hi + code * u`` in ``dtype`` (see :func:`encode_ecc`)."""
    out = hi.float()
    return out.addcmul_(_ecc_unit(out.abs()), code.float()).to(dtype)
