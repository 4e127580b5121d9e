"""Low-bit storage of optimizer state: ``gradkit.Optimizer(..., state_dtype="int8")`` for every recipe.

The transforms always compute in float32 (the compute dtype). Between steps, the state tensors of the
chosen kinds (first and second moments by default, :mod:`gradkit.core.state`) are kept compressed in the
optimizer's state under their own key with a suffix, so that ``state_dict``, deepcopy and DCP see plain
tensors:

======================  ====================================================================  ===============
``state_dtype``          stored entries of a state ``k``                                        bytes / value
======================  ====================================================================  ===============
``"float32"``            ``k`` as computed                                                      4
``"bfloat16"``           ``k`` in bfloat16                                                      2
``"bfloat16+ecc"``       ``k`` in bfloat16, ``k#ecc`` int8 correction (:func:`~.encode_ecc`)    3
``"int8"``               ``k#codes`` int8 ``(blocks, B)``, ``k#scales`` float32, ``k#shape``    1 + 4 / B
``"int4"``               ``k#codes`` uint8 ``(blocks, B/2)``, ``k#scales``, ``k#shape``         0.5 + 4 / B
======================  ====================================================================  ===============

Signed kinds (first moments) use the ``signed8`` / ``signed4`` maps, non-negative kinds (second moments)
``sqrt8`` / ``sqrt4`` (:mod:`gradkit.core.quantize`). States with fewer than ``min_size`` elements,
kinds not chosen (counters, projections, histories, indices, iterates, ...) and list-valued state stay as
computed. The state is stored from its init on. An unfused step decodes the stored states into float32
working tensors (one pass per state key over the params' concatenated codes, into one buffer whose views
the working tensors are), runs the chain, checks that every new block scale is finite
(:meth:`StateStorage.prepare`: a non-finite value raises ``ValueError`` with params and stored state
unchanged), applies the update and then encodes the buffer in place (the commit). Where no statistic
spans the group's params and no group-level state is kept, and gradients were checked finite, it does so
for one chunk of whole params at a time (:meth:`StateStorage.chunks`, :attr:`~StateStorage.chunk_elements`
elements), and under an elementwise chain a param larger than a chunk one slice of rows at a time
(:meth:`StateStorage.row_slices`, each slice on block boundaries, its state as views): the working tensors
are transient and cache-sized, reused from chunk to chunk rather than faulted in afresh at every step; a
chunk that fails (only an overflow can, gradients being finite) leaves the chunks before it stepped, and
says so. Nothing but the stored entries is kept between steps. The fused
step decodes and encodes inside its compiled programs (:func:`expand_stored`, :func:`check_entries`,
:func:`encode_entries`): they read codes and scales and run the chain, and nothing is written unless every
compressed value can be stored (else ``ValueError``): a first program returns the new block scales and a
flag per state and a second writes params, state, codes and scales, or (4-bit codes) one program selects
every write on the flags. An elementwise chain sees
each param as its whole blocks ``(n, block)`` and its remainder, so that the compiled loops run over
blocks with one scale per row; these pieces (and, for a partial last block, its codes and scales) enter
the program as views (:func:`blocked_views`) and are updated in place, and the new moments are
recomputed where they are read rather than kept in full-size buffers, so the step is two passes over the
state (block scales and flags; then codes and params).

>>> import torch, gradkit
>>> w = torch.nn.Parameter(torch.randn(64, 64))
>>> opt = gradkit.optim.AdamW([w], state_dtype="int8")
>>> w.grad = torch.randn(64, 64); opt.step()
>>> sorted(opt.state[w])
['adam.exp_avg#codes', 'adam.exp_avg#scales', 'adam.exp_avg#shape', 'adam.exp_avg_sq#codes', 'adam.exp_avg_sq#scales', 'adam.exp_avg_sq#shape', 'step']
>>> round(opt.state_bytes() / w.numel(), 3)
2.039
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import torch
from torch import Tensor

from gradkit.core.quantize import (MAPS, block_scales, check_ecc, check_finite, code_shape, decode, decode_ecc,
                                   ecc_storable, encode_ecc, encode_scaled, encode_with_scales, flagged_scales,
                                   integer_codes)
from gradkit.core.state import StateKind

__all__ = ["StateStorage", "MODES", "SUFFIXES", "base_key", "restore_slice"]

MODES = ("float32", "bfloat16", "bfloat16+ecc", "int8", "int4")
SUFFIXES = ("#codes", "#scales", "#shape", "#ecc")
_BITS = {"int8": 8, "int4": 4}


def base_key(key: str) -> str:
    """The state key a stored entry belongs to: ``"adam.exp_avg#codes"`` -> ``"adam.exp_avg"``."""
    return key.split("#", 1)[0]


class StateStorage:
    """How an optimizer keeps its floating-point state between steps.

    Args:
        mode: one of ``"float32" | "bfloat16" | "bfloat16+ecc" | "int8" | "int4"`` (``"bfloat16-ecc"`` is
            read as ``"bfloat16+ecc"``: specs such as ``adamw:state_dtype=bfloat16-ecc`` cannot hold a ``+``).
        block_size: elements per quantization block (int8/int4; an even int >= 2, default 256).
        min_size: states with fewer elements stay as computed (default 4096).
        kinds: the state kinds (roles) that are stored compressed (default first and second moments).

    >>> StateStorage.of("int4")
    StateStorage('int4', block_size=256, min_size=4096, kinds=('first_moment', 'second_moment'))
    """

    #: Elements of params an unfused step decodes, steps and encodes at a time (whole params; see
    #: :meth:`chunks`): 1 MiB of float32 per working tensor, reused from one chunk to the next.
    chunk_elements = 1 << 18
    #: Most values per slice of rows of a param larger than a chunk (:meth:`row_slices`; a param is cut in
    #: at least two): a slice is one tensor, so it can be larger than a chunk of several before its working
    #: tensors leave the cache (measured: AdamW with int8 state on 2^21-value matrices, 2^19 against 2^18
    #: and 2^20; 2^19-value matrices whole, 3.0x float32's step, in two slices 2.3x).
    slice_elements = 1 << 19

    def __init__(self, mode: str = "int8", *, block_size: int = 256, min_size: int = 4096,
                 kinds: tuple[str, ...] = ("first_moment", "second_moment")):
        mode = "bfloat16+ecc" if mode == "bfloat16-ecc" else mode  # the spelling the spec grammar can carry
        if mode not in MODES:
            raise ValueError(f"state_dtype must be None, a floating torch.dtype or one of {MODES}, got {mode!r}")
        if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 2 or block_size % 2:
            raise ValueError(f"block_size must be an even int >= 2, got {block_size!r}")
        if not isinstance(min_size, int) or isinstance(min_size, bool) or min_size < 0:
            raise ValueError(f"min_size must be an int >= 0, got {min_size!r}")
        if isinstance(kinds, str) or not all(isinstance(k, str) for k in kinds):
            raise ValueError(f"kinds must be a tuple of state kind roles such as 'first_moment', got {kinds!r}")
        self.mode, self.block_size, self.min_size, self.kinds = mode, block_size, min_size, tuple(kinds)

    @classmethod
    def of(cls, value: Any) -> "StateStorage | None":
        """A storage from ``state_dtype``'s text form, a tuple ``(mode, block_size, min_size)`` (the spec
        grammar's ``state_dtype=int8/256/0``) or a :class:`StateStorage`; ``None`` for anything else."""
        if isinstance(value, StateStorage):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, (tuple, list)) and value and isinstance(value[0], str):
            if len(value) > 3:
                raise ValueError(f"state_dtype as a tuple is (mode, block_size, min_size), got {value!r}")
            return cls(value[0], **dict(zip(("block_size", "min_size"), value[1:])))
        return None

    def __repr__(self) -> str:
        return (f"StateStorage({self.mode!r}, block_size={self.block_size}, min_size={self.min_size}, "
                f"kinds={self.kinds})")

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, StateStorage) and repr(self) == repr(other)

    # -- which form a state takes -------------------------------------------------------------------
    def form(self, kind: StateKind, value: Any) -> str | None:
        """``None`` (kept as computed), ``"bf16"``, ``"ecc"`` or a map name of :mod:`gradkit.core.quantize`."""
        if (self.mode == "float32" or not isinstance(value, Tensor) or not value.is_floating_point()
                or kind.role not in self.kinds or not kind.per_element or value.numel() < max(self.min_size, 1)):
            return None
        if self.mode == "bfloat16":
            return "bf16"
        if self.mode == "bfloat16+ecc":
            return "ecc"
        return _map_for(kind, _BITS[self.mode])

    def layout(self, state: dict[str, Any], kind_of: Callable[[str], StateKind]) -> dict[str, Any]:
        """The stored entries (meta tensors) of a state laid out as ``init`` builds it."""
        out = {}
        for key, value in state.items():
            form = self.form(kind_of(key), value)
            if form is None:
                out[key] = value
            elif form == "bf16":
                out[key] = torch.empty(value.shape, dtype=torch.bfloat16, device="meta")
            elif form == "ecc":
                out[key] = torch.empty(value.shape, dtype=torch.bfloat16, device="meta")
                out[key + "#ecc"] = torch.empty(value.shape, dtype=torch.int8, device="meta")
            else:
                codes, scales = code_shape(value.numel(), form, self.block_size)
                out[key + "#codes"] = torch.empty(codes, dtype=torch.int8 if form.endswith("8") else torch.uint8,
                                                  device="meta")
                out[key + "#scales"] = torch.empty(scales, dtype=torch.float32, device="meta")
                out[key + "#shape"] = torch.empty(value.dim(), dtype=torch.int64, device="meta")
        return out

    # -- a step: decode before the chain, encode after it -------------------------------------------
    def chunks(self, sizes: list[int]) -> list[list[int]]:
        """Consecutive runs of param indices of at most :attr:`chunk_elements` elements each (a larger param
        is a run of its own).

        >>> StateStorage("int8").chunks([1 << 17, 1 << 17, 1 << 17, 1 << 20, 5])
        [[0, 1], [2], [3], [4]]
        """
        runs: list[list[int]] = []
        total = 0
        for i, size in enumerate(sizes):
            if not runs or total + size > self.chunk_elements:
                runs.append([])
                total = 0
            runs[-1].append(i)
            total += size
        return runs

    def row_slices(self, state: dict, shape: torch.Size) -> list[tuple[int, int]] | None:
        """Row ranges ``[(r0, r1), ...]`` in which a param of ``shape`` larger than :attr:`chunk_elements`, with
        ``state``, can be stepped by an elementwise chain one slice at a time: at least two, each of at most
        about :attr:`slice_elements` values (the working tensors of a whole large param leave the cache); ``None``
        where it cannot: every entry but ``step`` must be a compressed one or hold a value per element, and
        each slice must start on a block boundary of every code and hold at least ``min_size`` values.

        >>> state = {"step": 3, "m#codes": torch.zeros(4096, 256, dtype=torch.int8), "m#scales": torch.zeros(4096),
        ...          "m#shape": torch.tensor([1024, 1024])}
        >>> StateStorage("int8").row_slices(state, torch.Size([1024, 1024]))
        [(0, 512), (512, 1024)]
        """
        numel = shape.numel()
        if len(shape) == 0 or numel <= self.chunk_elements:
            return None
        row = numel // shape[0]
        align = 1  # rows per block boundary of every code
        for name, value in state.items():
            if name == "step" or name.endswith(("#scales", "#shape")):
                continue
            if not isinstance(value, Tensor):
                return None
            if name.endswith("#codes"):
                block = _block_of_codes(value)
                align = math.lcm(align, block // math.gcd(row, block))
            elif value.shape != shape:  # a per-param statistic would be stepped once per slice
                return None
        target = min(self.slice_elements, -(-numel // 2))  # at least two slices
        rows = max(align, target // row // align * align)
        bounds = list(range(0, shape[0], rows)) + [shape[0]]
        if len(bounds) > 2 and (bounds[-1] - bounds[-2]) * row < target // 2:
            del bounds[-2]  # a short tail joins the slice before it
        if len(bounds) <= 2 or min(b - a for a, b in zip(bounds, bounds[1:])) * row < max(self.min_size, 1):
            return None
        return list(zip(bounds, bounds[1:]))

    @staticmethod
    def state_slice(state: dict, shape: torch.Size, rows: tuple[int, int]) -> dict:
        """The state of rows ``[r0, r1)`` of a param of ``shape`` (:meth:`row_slices`): views of its codes,
        scales and per-element entries, which a step updates in place (:func:`restore_slice` copies back any
        entry it replaced)."""
        r0, r1 = rows
        row = shape.numel() // shape[0]
        out = {}
        for name, value in state.items():
            if name == "step":
                out[name] = value
            elif name.endswith(("#codes", "#scales")):
                block = _block_of_codes(state[base_key(name) + "#codes"])
                out[name] = value[r0 * row // block:-(-r1 * row // block)]
            elif name.endswith("#shape"):
                out[name] = torch.tensor((r1 - r0,) + tuple(shape[1:]), dtype=torch.int64)
            else:
                out[name] = value[r0:r1]
        return out

    def unpack(self, states: list[dict], kind_of: Callable[[str], StateKind], dtypes: list[torch.dtype]) -> dict:
        """``{key: [working tensor or None per param]}``: the stored states decoded to the compute dtypes."""
        keys = sorted({base_key(k) for s in states for k in s} - {"step"})
        lists = {}
        for key in keys:
            values = [s.get(key) for s in states]
            coded = [i for i, s in enumerate(states) if key + "#codes" in s]
            if coded:
                codes = [states[i][key + "#codes"] for i in coded]
                scales = [states[i][key + "#scales"] for i in coded]
                form = _map_name(kind_of(key), codes[0])
                per = codes[0].shape[1] * (8 // int(form[-1]))
                flat = decode(_joined(codes), _joined(scales), form, sum(c.shape[0] for c in codes) * per,
                              torch.float32)
                start = 0
                for i, c in zip(coded, codes):
                    shape = torch.Size(states[i][key + "#shape"].tolist())
                    end = start + c.shape[0] * per
                    if not MAPS[form][1] and end > start + shape.numel():
                        # the padding decodes to the smallest level; the encode reads it (pack) as zeros
                        flat[start + shape.numel():end].zero_()
                    values[i] = flat[start:start + shape.numel()].view(shape).to(dtypes[i])
                    start = end
            hi = [i for i, v in enumerate(values) if isinstance(v, Tensor) and v.is_floating_point()
                  and v.dtype != dtypes[i]]
            if hi:
                ecc = [i for i in hi if key + "#ecc" in states[i]]
                plain = [i for i in hi if key + "#ecc" not in states[i]]
                if ecc:
                    flat = decode_ecc(torch.cat([values[i].reshape(-1) for i in ecc]),
                                      torch.cat([states[i][key + "#ecc"].reshape(-1) for i in ecc]))
                    self._scatter(values, ecc, flat, dtypes)
                if plain:
                    self._scatter(values, plain, torch.cat([values[i].reshape(-1) for i in plain]).float(), dtypes)
            lists[key] = values
        return lists

    @staticmethod
    def _scatter(values: list, indices: list[int], flat: Tensor, dtypes: list) -> None:
        parts = flat.split([values[i].numel() for i in indices])
        for i, part in zip(indices, parts):
            values[i] = part.view(values[i].shape).to(dtypes[i])

    def pack(self, states: list[dict], lists: dict, kind_of: Callable[[str], StateKind]) -> None:
        """Encode the working tensors of ``lists`` into ``states`` (:meth:`prepare`, then its commit)."""
        self.prepare(states, lists, kind_of)()

    def prepare(self, states: list[dict], lists: dict, kind_of: Callable[[str], StateKind]) -> Callable[[], None]:
        """Check that the working tensors of ``lists`` can be stored (raising ``ValueError``, with nothing
        written, where one holds a value its form cannot code) and return the commit that encodes and
        writes them into ``states``. The commit may overwrite the working tensors, which the step's update
        may still read: the optimizer applies the update first."""
        writes, coded = [], []
        for key, values in lists.items():
            kind = kind_of(key)
            forms: dict[str, list[int]] = {}
            for i, v in enumerate(values):
                form = self.form(kind, v)
                if form is not None:
                    forms.setdefault(form, []).append(i)
            for form, idx in forms.items():
                what = f"state {key!r}"
                if form == "bf16":
                    writes.append((key, idx, {key: [values[i].to(torch.bfloat16) for i in idx]}))
                elif form == "ecc":
                    flat = _working_buffer([values[i] for i in idx], 1)
                    check_ecc(flat, what)
                    coded.append((key, idx, form, flat, None))
                else:
                    block = self.block_size
                    blocks = _working_buffer([values[i] for i in idx], block).view(-1, block)
                    scales = block_scales(blocks, form)
                    check_finite(scales, what, None if MAPS[form][1] else form)
                    coded.append((key, idx, form, blocks, scales))

        def commit() -> None:
            for key, idx, form, blocks, scales in coded:
                if form == "ecc":
                    hi, code = encode_ecc(blocks, check=False, consume=True)
                    sizes = [lists[key][i].numel() for i in idx]
                    writes.append((key, idx, {
                        key: [h.view(lists[key][i].shape) for h, i in zip(hi.split(sizes), idx)],
                        key + "#ecc": [c.view(lists[key][i].shape) for c, i in zip(code.split(sizes), idx)]}))
                    continue
                bits, signed = MAPS[form]
                counts = [-(-lists[key][i].numel() // self.block_size) for i in idx]
                rows = list(encode_scaled(blocks, scales, form, consume=True).split(counts))
                entries = {key + "#scales": list(scales.split(counts)),
                           key + "#shape": [_shape_entry(states[i].get(key + "#shape"), lists[key][i].shape)
                                            for i in idx]}
                olds = [states[i].get(key + "#codes") for i in idx]
                if bits == 8 and all(isinstance(o, Tensor) and o.dtype == torch.int8 and o.shape == r.shape
                                     for o, r in zip(olds, rows)):
                    torch._foreach_copy_(olds, rows)  # the integer-valued floats convert exactly in the copy
                else:
                    entries[key + "#codes"] = list(integer_codes(torch.cat(rows), bits, signed).split(counts))
                for i in idx:
                    states[i].pop(key, None)
                writes.append((key, idx, entries))
            self._write(states, lists, kind_of, writes)

        return commit

    def _write(self, states: list[dict], lists: dict, kind_of: Callable[[str], StateKind], writes: list) -> None:
        for key, idx, entries in writes:
            for name, new in entries.items():
                old = [states[i].get(name) for i in idx]
                same = {j for j, o in enumerate(old) if isinstance(o, Tensor) and o.shape == new[j].shape
                        and o.dtype == new[j].dtype}
                if name.endswith("#shape"):
                    same = {j for j in same if old[j] is new[j]}
                elif same:  # rewrite the stored tensors in place: one foreach copy, no new allocation kept
                    torch._foreach_copy_([old[j] for j in sorted(same)], [new[j] for j in sorted(same)])
                for j, i in enumerate(idx):
                    if j not in same:
                        states[i][name] = new[j].clone()
        for key, values in lists.items():  # states that left a stored form (e.g. a state that shrank)
            for s, v in zip(states, values):
                if v is not None and self.form(kind_of(key), v) is None:
                    for suffix in SUFFIXES:
                        s.pop(key + suffix, None)
                    s[key] = v

    # -- the fused step: decode and encode inside the compiled program (core/fused.py) -------------------
    def stored_entries(self, states: list[dict], kind_of: Callable[[str], StateKind],
                       dtypes: list[torch.dtype]) -> tuple[dict, dict]:
        """``(lists, stored)``: the state lists as :meth:`unpack` returns them but ``None`` where a state is
        stored compressed, and ``{key: [entry or None per param]}`` for those, an entry being the stored
        tensors with how to read them (:func:`decode_entry`), which the fused program decodes itself."""
        keys = sorted({base_key(k) for s in states for k in s} - {"step"})
        lists, stored = {}, {}
        for key in keys:
            values = [s.get(key) for s in states]
            entries: list = [None] * len(states)
            for i, s in enumerate(states):
                if key + "#codes" in s:
                    codes = s[key + "#codes"]
                    entries[i] = (_map_name(kind_of(key), codes), codes, s[key + "#scales"],
                                  torch.Size(s[key + "#shape"].tolist()))
                elif key + "#ecc" in s:
                    entries[i] = ("ecc", values[i], s[key + "#ecc"])
                elif isinstance(values[i], Tensor) and values[i].is_floating_point() and values[i].dtype != dtypes[i]:
                    entries[i] = ("cast", values[i])
                else:
                    continue
                values[i] = None
            lists[key] = values
            if any(e is not None for e in entries):
                stored[key] = entries
        return lists, stored

    @staticmethod
    def check_flags(ok: Tensor, names: list[str]) -> None:
        """Raise ``ValueError`` naming the first state whose flag in ``ok`` (from :func:`check_entries`) is
        false (one host sync); the fused step then writes nothing."""
        if ok.numel() and not bool(ok.all()):
            what = names[int((~ok).nonzero()[0])]
            raise ValueError(f"state {what!r} holds inf or nan (or a value its map cannot code), which a compressed "
                             "state cannot represent; the stored state is unchanged")

    # -- loading a state_dict saved with another storage ----------------------------------------------
    def convert(self, path: str, entry: dict, layout: dict, kind_of: Callable[[str], StateKind],
                dtype: torch.dtype) -> dict:
        """``entry`` (a saved param state) in this storage's form where it was saved in another one."""
        return convert_entry(self, path, entry, layout, kind_of, dtype)


def restore_slice(views: dict, stepped: dict) -> None:
    """After a step of a :meth:`StateStorage.state_slice`: copy into the param's state any entry the step
    replaced rather than updated in place."""
    for name, view in views.items():
        if name == "step" or name.endswith("#shape"):
            continue
        new = stepped.get(name)
        if new is None:
            raise RuntimeError(f"a sliced step dropped the state entry {name!r}")
        if new is not view:
            view.copy_(new)


def _block_of_codes(codes: Tensor) -> int:
    return codes.shape[1] * (1 if codes.dtype == torch.int8 else 2)


def _joined(tensors: list[Tensor]) -> Tensor:
    """The tensors concatenated, or the one tensor itself (no copy)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _decoded_buffer(values: list[Tensor], block: int) -> Tensor | None:
    """The flat float32 buffer :meth:`StateStorage.unpack` decoded ``values`` into, when they are still its
    views, in order, each starting at a block boundary; else ``None``."""
    base = values[0]._base
    if base is None or base.dtype != torch.float32 or not base.is_contiguous() or base.numel() % block:
        return None
    offset = base.storage_offset()
    for v in values:
        if v._base is not base or v.dtype != torch.float32 or not v.is_contiguous() or v.storage_offset() != offset:
            return None
        offset += -(-v.numel() // block) * block
    return base.view(-1) if offset == base.storage_offset() + base.numel() else None


def _working_buffer(values: list[Tensor], block: int) -> Tensor:
    """One flat float32 buffer of ``values``, each padded with zeros to whole blocks, which the encode may
    overwrite: the buffer :meth:`StateStorage.unpack` decoded them into, or (a fresh state, or the chain
    replaced a working tensor) a new one."""
    flat = _decoded_buffer(values, block)
    if flat is not None:
        return flat
    pieces = []
    for v in values:
        piece = v.reshape(-1).float()
        pieces.append(piece)
        if (-piece.numel()) % block:
            pieces.append(piece.new_zeros((-piece.numel()) % block))
    return torch.cat(pieces)


def _map_for(kind: StateKind, bits: int) -> str:
    """The map (:mod:`gradkit.core.quantize`) a state of ``kind`` is coded with in ``bits`` bits."""
    return ("sqrt" if kind.non_negative else "signed") + str(bits)


def _map_name(kind: StateKind, codes: Tensor) -> str:
    """The map stored ``codes`` of a state of ``kind`` were written with (int8 codes: 8 bits, else 4)."""
    return _map_for(kind, 8 if codes.dtype == torch.int8 else 4)


def decode_entry(entry: tuple, dtype: torch.dtype) -> Tensor:
    """The working tensor of a stored entry of :meth:`StateStorage.stored_entries` (traceable)."""
    form = entry[0]
    if form == "cast":
        return entry[1].to(dtype)
    if form == "ecc":
        return decode_ecc(entry[1], entry[2], dtype)
    codes, scales, shape = entry[1], entry[2], entry[3]
    return decode(codes, scales, form, shape.numel(), dtype).view(shape)


def block_of(entry: tuple) -> int:
    """The block size of a quantized stored entry (elements per row of its codes)."""
    return _block_of_codes(entry[1][0] if isinstance(entry[1], tuple) else entry[1])


def _pieces(numel: int, block: int | None) -> list[tuple[int, int, tuple[int, int]]]:
    """``(start, length, shape)`` of the pieces a flat tensor is stepped in: whole blocks ``(n, block)``
    and the remainder ``(1, r)``."""
    whole = numel // block * block
    out = [(0, whole, (whole // block, block))] if whole else []
    return out + ([(whole, numel - whole, (1, numel - whole))] if numel > whole else [])


def expand_stored(params: list[Tensor], updates: list[Tensor], states: dict[str, list], stored: dict[str, list],
                  dtypes: list[torch.dtype], extras: list, block: int | None):
    """The lists the chain runs on inside the fused program, with the stored states decoded.

    ``block=None``: one working tensor per param. ``block=B`` (elementwise chains, contiguous tensors):
    each param with compressed state is stepped as two pieces, its whole blocks ``(n, B)`` and its
    remainder ``(1, r)``, so that Inductor loops over the blocks of the codes with one scale per row
    instead of gathering codes and scales at param-shaped indices. A param given as its pieces
    (:func:`blocked_views`: the ``(n, B)`` view, or a pair of views with the remainder) is stepped in them
    in place; otherwise the pieces are fresh tensors (an in-place op on a view of an input would be traced
    as a scatter over the whole input per op), which the caller writes back with :func:`write_back`.
    Returns ``(params, updates, states, extras, back, joins)``: ``back`` is ``[(key, entry, [index of each
    piece])]`` for :func:`encode_entries`, ``joins`` ``[(target, key or None, [index of each piece])]``
    for :func:`write_back`."""
    out_p, out_u, out_x = [], [], []
    out_s: dict[str, list] = {k: [] for k in states}
    back, joins = [], []
    for i, p in enumerate(params):
        mine = {k: e[i] for k, e in stored.items() if e[i] is not None}
        first = len(out_p)
        if not mine or block is None:
            out_p.append(p)
            out_u.append(updates[i])
            out_x.append(extras[i])
            for k in states:
                out_s[k].append(decode_entry(mine[k], dtypes[i]) if k in mine else states[k][i])
            back += [(k, e, [first]) for k, e in mine.items()]
            continue
        numel = _numel(p)
        parts = _pieces(numel, block)
        index = list(range(first, first + len(parts)))
        # given as its pieces (blocked_views), or one piece: stepped in place, no write-back
        whole = isinstance(p, tuple) or len(parts) == 1

        def cut(t) -> list[Tensor]:
            if isinstance(t, tuple):
                return list(t)
            if len(parts) == 1:
                return [t if t.shape == parts[0][2] else t.reshape(parts[0][2])]
            flat = t.reshape(-1)
            return [flat.narrow(0, a, n).view(shape).clone() for a, n, shape in parts]

        out_p += cut(p)
        out_u += cut(updates[i])
        out_x += [extras[i]] * len(parts)
        if not whole:
            joins.append((p, None, index))
        for k in states:
            e, v = mine.get(k), states[k][i]
            if e is not None and e[0] in MAPS and isinstance(e[1], tuple):  # codes given in pieces too
                out_s[k] += [decode(c, sc, e[0], c.shape[0] * block, dtypes[i]).view(c.shape[0], block)
                             .narrow(1, 0, shape[1]) for c, sc, (a, n, shape) in zip(e[1], e[2], parts)]
            elif e is not None and e[0] in MAPS:
                blocks = e[1].shape[0]
                decoded = decode(e[1], e[2], e[0], blocks * block, dtypes[i]).view(blocks, block)
                out_s[k] += [decoded.narrow(0, a // block, shape[0]).narrow(1, 0, shape[1]).clone()
                             for a, n, shape in parts]
            elif e is not None:
                out_s[k] += cut(decode_entry(e, dtypes[i]))
            elif isinstance(v, (Tensor, tuple)) and _numel(v) == numel:
                out_s[k] += cut(v)
                if not whole:
                    joins.append((v, k, index))
            elif isinstance(v, (Tensor, tuple)):
                raise RuntimeError(f"state {k!r} of an elementwise chain does not have its param's size")
            else:
                out_s[k] += [v] * len(parts)
        back += [(k, e, index) for k, e in mine.items()]
    return out_p, out_u, out_s, out_x, back, joins


def _numel(t) -> int:
    return sum(x.numel() for x in t) if isinstance(t, tuple) else t.numel()


def blocked_views(params: list[Tensor], grads: list[Tensor], states: dict[str, list], stored: dict[str, list],
                  block: int) -> tuple[list, list, dict[str, list], dict[str, list]]:
    """``(params, grads, stored, states)`` with each param that has compressed state (with its gradient, its
    other per-element states and, for a partial last block, its codes and scales) as the views the fused
    program steps it in, taken before the program: its whole blocks ``(n, block)``, and a partial last
    block ``(1, r)`` as a second view (a pair). The in-place
    update of each is then a plain write of a program input (views taken inside the program would be
    written back through a reshape or a scatter, which Inductor does with an extra full-size buffer and a
    copy). A param smaller than a block is left as it is."""
    params, grads = list(params), list(grads)
    states = {k: list(v) for k, v in states.items()}
    stored = {k: list(v) for k, v in stored.items()}
    for i, p in enumerate(params):
        numel = p.numel()
        if numel < block or not any(e[i] is not None for e in stored.values()):
            continue
        whole = numel // block * block

        def pieces(t: Tensor):
            flat = t.view(-1)
            main = flat[:whole].view(-1, block)
            return main if whole == numel else (main, flat[whole:].view(1, -1))

        params[i], grads[i] = pieces(p), pieces(grads[i])
        for values in states.values():
            if isinstance(values[i], Tensor) and values[i].numel() == numel:
                values[i] = pieces(values[i])
        if whole < numel:  # the codes and scales of the partial last block, a view of their own too
            for entries in stored.values():
                e = entries[i]
                if e is not None and e[0] in MAPS and block_of(e) == block:
                    rows = whole // block
                    entries[i] = (e[0], (e[1][:rows], e[1][rows:]), (e[2][:rows], e[2][rows:])) + e[3:]
    return params, grads, stored, states


def write_back(joins: list, params: list[Tensor], states: dict[str, list]) -> None:
    """Write the pieces of :func:`expand_stored` back into the tensors they were cut from."""
    for target, key, index in joins:
        pieces = [(params if key is None else states[key])[j] for j in index]
        target.copy_(_joined([t.reshape(-1) for t in pieces]).view(target.shape))


def _value_of(entry: tuple, pieces: list[Tensor]) -> Tensor:
    """The working value of a cast or ecc entry, in the stored tensor's shape."""
    return _joined([v.reshape(-1) for v in pieces]).reshape(entry[1].shape)


def check_entries(stored: list[tuple[tuple, list[Tensor]]]) -> tuple[tuple[Tensor, ...], Tensor | None]:
    """The first phase of the fused program's encode, ``[(entry, [working tensor of each piece]), ...]`` as
    :func:`encode_entries` takes them: the new block scales of every quantized entry's pieces, in order, and one
    flag per quantized or ecc entry (``None`` when there is none), false where a value cannot be stored, for
    :meth:`StateStorage.check_flags`. Writes nothing; plain tensor ops, no host sync."""
    scales, flags = [], []
    for entry, pieces in stored:
        form = entry[0]
        if form == "cast":
            continue
        if form == "ecc":
            flags.append(ecc_storable(_value_of(entry, pieces)))
            continue
        flagged = [flagged_scales(v, form, block_of(entry)) for v in pieces]
        scales += [s for s, _ in flagged]
        # one flag per entry (its name is reported), over its pieces
        flags.append(torch.stack([ok for _, ok in flagged]).all() if len(flagged) > 1 else flagged[0][1])
    return tuple(scales), (torch.stack(flags) if flags else None)


def flag_names(stored: list[dict | None]) -> list[str]:
    """The state key of each flag :func:`check_entries` returns, in its order, given each group's stored
    entries ``{key: [entry or None per param]}``: the fused program meets them param by param
    (:func:`expand_stored`), each param's in key order."""
    names = []
    for entries_of in stored:
        for i in range(len(next(iter(entries_of.values()))) if entries_of else 0):
            names += [key for key, entries in entries_of.items() if entries[i] is not None and entries[i][0] != "cast"]
    return names


def encode_entries(stored: list[tuple[tuple, list[Tensor]]], scales: tuple[Tensor, ...] = (),
                   only_if: Tensor | None = None) -> None:
    """Encode the working tensors of each stored entry, ``[(entry, [working tensor of each piece]), ...]``,
    inside the fused program and overwrite the stored tensors; the quantized entries against ``scales``
    (:func:`check_entries`). ``only_if`` (a 0-dim bool tensor): each stored tensor keeps its value where it is
    false. Plain tensor ops, no host sync."""
    given = iter(scales)
    for entry, pieces in stored:
        form = entry[0]
        if form in ("cast", "ecc"):
            value = _value_of(entry, pieces)
            if form == "cast":
                _put(entry[1], value, only_if)
            else:
                hi, code = encode_ecc(value, check=False)
                _put(entry[1], hi, only_if)
                _put(entry[2], code, only_if)
            continue
        block = block_of(entry)
        coded = []
        for v in pieces:
            piece_scales = next(given)
            coded.append((encode_with_scales(v, piece_scales, form, block), piece_scales))
        if isinstance(entry[1], tuple):  # each piece's codes and scales are a view of the stored ones
            for (c, s), old_c, old_s in zip(coded, entry[1], entry[2]):
                _put(old_c, c, only_if)
                _put(old_s, s, only_if)
            continue
        _put(entry[1], _joined([c for c, _ in coded]), only_if)
        _put(entry[2], _joined([s for _, s in coded]), only_if)


def _put(target: Tensor, value: Tensor, only_if: Tensor | None) -> None:
    if only_if is None:
        target.copy_(value)
    else:
        # selected in float32 (exact for codes): a select of 8-bit values under a scalar flag compiles to a
        # byte-by-byte mask conversion on CPU, a float32 one to a vector blend
        target.copy_(torch.where(only_if, value.float(), target.float()))


def _shape_entry(old: Any, shape: torch.Size) -> Tensor:
    """The stored shape entry: the one already stored when it still holds ``shape``."""
    if isinstance(old, Tensor) and tuple(old.tolist()) == tuple(shape):
        return old
    return torch.tensor(shape, dtype=torch.int64)


def _stored_forms(entry: dict) -> set[str]:
    return {base_key(k) for k in entry if "#" in k}


def convert_entry(storage: "StateStorage | None", path: str, entry: dict, layout: dict,
                  kind_of: Callable[[str], StateKind], dtype: torch.dtype) -> dict:
    """A saved param state converted to the stored form ``layout`` asks for (decoded where the loading
    optimizer keeps full precision, encoded where it quantizes), with a warning saying so; unchanged when
    the forms already agree."""
    if not isinstance(entry, dict) or (all(k in layout for k in entry if k != "step")
                                       and all(k in entry for k in layout if "#" in k)):
        return entry
    decoded = {}
    for key in _stored_forms(entry) | {k for k in entry if k != "step" and "#" not in k}:
        if key + "#codes" in entry:
            codes, scales, shape = entry[key + "#codes"], entry.get(key + "#scales"), entry.get(key + "#shape")
            if not isinstance(codes, Tensor) or not isinstance(scales, Tensor) or not isinstance(shape, Tensor):
                raise TypeError(f"state_dict {path}[{key!r}] is stored quantized but its codes, scales or shape "
                                "entry is missing or not a tensor")
            form = _map_name(kind_of(key), codes)
            numel = int(torch.Size(shape.tolist()).numel())
            per = codes.shape[1] * (8 // int(form[-1]))
            decoded[key] = decode(codes, scales, form, codes.shape[0] * per).narrow(0, 0, numel).view(
                torch.Size(shape.tolist())).to(dtype)
        elif key + "#ecc" in entry:
            decoded[key] = decode_ecc(entry[key], entry[key + "#ecc"]).to(dtype)
        elif key in entry:
            decoded[key] = entry[key]
    if "step" in entry:
        decoded["step"] = entry["step"]
    mine = storage.mode if storage is not None else "float32"
    warnings.warn(f"state_dict {path} was saved with another state storage: its state is converted to this "
                  f"optimizer's ({mine}), which may lose precision", UserWarning, stacklevel=4)
    if storage is None:
        return decoded
    lists = {k: [v] for k, v in decoded.items() if k != "step"}
    state = {"step": decoded.get("step")} if "step" in decoded else {}
    storage.pack([state], {k: [v.to(dtype) if isinstance(v, Tensor) and v.is_floating_point() else v]
                           for k, (v,) in lists.items()}, kind_of)
    return state
