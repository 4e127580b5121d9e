"""What moves the unfused int8 AdamW step: chunk size, param size, and a compiled codec around the eager chain.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/lowbit_unfused.py

Three sweeps at 2^22 parameters (``--size``), each printing the step time of gradkit's unfused AdamW with
int8 state as a ratio to the float32 step on the same params, the optimizers of one sweep timed in
interleaved rounds (best of 3x3 steps per round, best round reported):

1. 8 square matrices, :attr:`StateStorage.chunk_elements` (values of whole params decoded, stepped and
   encoded at a time; a larger param goes in slices of rows, :attr:`StateStorage.slice_elements`) from
   2^18 (the default) to 2^22;
2. 64 and 256 square matrices (smaller params, several per chunk), chunks of 2^14 to 2^18 values;
3. the default, against the same step whose decode, block scales and encode are each compiled on their own
   (``torch.compile``, dynamic shapes) while the chain stays eager: what a compiled codec alone would give.

Not a test: nothing is asserted; the README quotes the ratios.
"""
from __future__ import annotations

import argparse

import torch

import gradkit
import gradkit.core.quantize as quantize
import gradkit.core.storage as storage
from gradkit.bench.measure import device_name
from _timing import best_of, square_params

EAGER = {name: getattr(storage, name) for name in ("decode", "block_scales", "encode_scaled")}
_compiled: dict = {}


def _once(fn, *static):
    """``fn`` compiled once per set of static arguments (passed after the tensors)."""
    key = (fn,) + static
    if key not in _compiled:
        _compiled[key] = torch.compile(lambda *tensors: fn(*tensors, *static), dynamic=True, fullgraph=True)
    return _compiled[key]


def _decode_whole(codes, scales, form, dtype):
    return quantize.decode(codes, scales, form, codes.shape[0] * codes.shape[1] * (8 // quantize.MAPS[form][0]), dtype)


def _decode(codes, scales, form, numel, dtype):
    return _once(_decode_whole, form, dtype)(codes, scales)[:numel]


def _scales(blocks, form):
    return _once(quantize.block_scales, form)(blocks)


def _encode(blocks, scales, form, consume=False):
    return _once(quantize.encode_scaled, form)(blocks, scales)


def use_compiled_codec(on: bool) -> None:
    """Point the storage's codec at the compiled functions (or back at the eager ones)."""
    compiled = {"decode": _decode, "block_scales": _scales, "encode_scaled": _encode}
    for name, fn in (compiled if on else EAGER).items():
        setattr(storage, name, fn)


def sweep(title: str, total: int, tensors: int, configs: list[tuple[str, int | None, bool]], rounds: int) -> None:
    """``configs``: (label, chunk_elements or None for float32, compiled codec)."""
    opts = []
    for label, chunk, compiled in configs:
        use_compiled_codec(compiled)
        opt = gradkit.optim.AdamW(square_params(total, tensors), state_dtype="float32" if chunk is None else "int8")
        if chunk is not None:
            opt.storage.chunk_elements = chunk
        opt.step()
        opt.step()  # the state, and any compiled codec, before timing
        opts.append((label, compiled, opt, []))
    for _ in range(rounds):
        for _, compiled, opt, times in opts:
            use_compiled_codec(compiled)
            times.append(best_of(opt.step, repeat=3, number=3))
    use_compiled_codec(False)
    base = min(opts[0][3])
    print(f"\n{title}")
    for label, _, _, times in opts:
        print(f"  {label:<36} {min(times) * 1e3:8.2f} ms  {min(times) / base:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=22, help="power of two of the parameter count (default 22)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    total = 2 ** args.size
    print(f"machine: {device_name()}, torch {torch.__version__}, {args.threads} thread(s), {total} parameters")
    fp32 = ("float32", None, False)
    sweep("8 matrices, chunk size", total, 8,
          [fp32] + [(f"int8, chunks of 2^{k}", 1 << k, False) for k in (18, 20, 22)], args.rounds)
    for tensors in (64, 256):
        sweep(f"{tensors} matrices, chunk size", total, tensors,
              [fp32] + [(f"int8, chunks of 2^{k}", 1 << k, False) for k in (14, 16, 18)], args.rounds)
    sweep("8 matrices, codec", total, 8,
          [fp32, ("int8, eager codec", 1 << 18, False), ("int8, compiled codec, eager chain", 1 << 18, True)],
          args.rounds)


if __name__ == "__main__":
    main()
