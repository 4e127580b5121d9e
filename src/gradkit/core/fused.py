"""The fused step (``gradkit.Optimizer(..., fused=True)``): a whole chain compiled into one program.

The unfused step runs each transform as multi-tensor (foreach) ops, one pass over memory per op.
The fused step traces the chain's own ``update`` (the same code as the unfused step, run with
:data:`~gradkit.core.ops.TRACED`: plain tensor math per tensor) for every tensor of every param group
into one graph and compiles it with ``torch.compile`` (Inductor: Triton
kernels on CUDA, C++/OpenMP loops on CPU). Each tensor's whole update then reads the param, the
gradient and each state tensor once and writes the param and its state once.

What keeps the program from recompiling and from synchronising with the host:

- every step-dependent scalar (learning rate, bias corrections, warm-ups) is computed in Python by
  the transforms' ``scalars(group, step)``, once per group and distinct step count, and reaches the program
  as one small float64 table, copied to the device without blocking;
- the program reads only flags from the param groups (``amsgrad``, ``maximize``); changing one
  traces it again, as does a change of the tensors (another set of tensors with a gradient, other
  shapes or dtypes) or of which tensors are at which step.

Each optimizer's :class:`FusedStep` has a compile cache of its own; when it needs more than
``torch._dynamo.config.recompile_limit`` versions the step raises ``RuntimeError`` (params and state
unchanged) instead of running uncompiled.

Low-precision params are read and written in their own dtype and computed in the state dtype inside
the program, so no full-precision copy of them is kept.

Compressed state (``state_dtype="int8"`` etc., :mod:`gradkit.core.storage`) is decoded, stepped and
re-encoded inside the program: it reads the codes and scales (not a decoded float32 copy). Where a
compressed value could fail to be stored (inf, nan, or a negative value for a non-negative map), nothing
is written unless every such value can be: with 8-bit codes or ecc the step is two programs compiled from
the same trace, the first running the chain on copies and returning only the new block scales and one
flag per state, the second (run once the optimizer has checked the flags, one host sync, raising
``ValueError`` naming the state otherwise) stepping and encoding against those scales; with 4-bit codes it
is one program that selects every write (params and uncompressed state too) on the flags, as unpacking
the nibbles a second time costs more than the selects. (A transform that drew random numbers, which none of
gradkit's fusable transforms does, would draw them in both programs.)
"""
from __future__ import annotations

import types
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from gradkit.core.context import StepContext
from gradkit.core.ops import TRACED
from gradkit.core.quantize import MAPS
from gradkit.core.sharding import chain_reach
from gradkit.core.state import ELEMENTWISE
from gradkit.core.storage import block_of, blocked_views, check_entries, encode_entries, expand_stored, write_back
from gradkit.core.transform import Chain

__all__ = ["FusedStep", "FusedGroup", "check_fusable"]


class FusedGroup(NamedTuple):
    """What the program needs of one param group: the tensors with a gradient, their state lists
    (``{key: [tensor or None per param]}``), the step each is about to take and its compute dtype."""

    group: dict
    params: list[Tensor]
    grads: list[Tensor]
    states: dict[str, list]
    steps: list[int]
    compute_dtypes: list[torch.dtype]
    #: compressed states, ``{key: [stored entry or None per param]}`` (``StateStorage.stored_entries``):
    #: the program decodes them, runs the chain and encodes them back
    stored: dict | None = None


def _program(chain: Chain, groups: tuple[dict, ...], params: tuple[list[Tensor], ...], grads: tuple[list[Tensor], ...],
             states: tuple[dict[str, list], ...], table: Tensor, rows: tuple[tuple[int, ...], ...],
             paths: tuple[tuple[str, ...], ...], compute_dtypes: tuple[tuple[torch.dtype, ...], ...],
             stored: tuple[dict | None, ...], blocks: tuple[int | None, ...], phase: str = "write",
             scales: tuple[Tensor, ...] = ()):
    """The step. ``phase="check"`` (compressed state that can be refused) writes nothing and returns
    :func:`~gradkit.core.storage.check_entries`' new block scales and flags; ``phase="write"`` writes params,
    state, codes and, against ``scales``, the quantized states' new codes; ``phase="guarded"`` is both in one
    program, every write (params and uncompressed state too) selected on the flags, which it returns."""
    checking, guarded = phase == "check", phase == "guarded"
    on_entry = []  # guarded: each param and state tensor the step may write, with its value on entry
    # One scalar tree per distinct table row, shared by the tensors that use it (usually all of a
    # group's), so that the trace stays small.
    trees: dict = {}
    pending = []
    for group, group_params, group_grads, group_states, group_rows, dtypes, group_stored, block in zip(
            groups, params, grads, states, rows, compute_dtypes, stored, blocks):
        if checking:  # the chain steps copies, of which only what the flags read is computed
            group_params = [_copied(p) for p in group_params]
            group_states = {k: [_copied(v) for v in values] for k, values in group_states.items()}
        elif guarded:
            on_entry += [(t, t.clone()) for t in _tensors(group_params)]
            on_entry += [(t, t.clone()) for values in group_states.values() for t in _tensors(values)]
        params_c = [_in_dtype(p, dt) for p, dt in zip(group_params, dtypes)]
        updates = [_in_dtype(g, dt) for g, dt in zip(group_grads, dtypes)]
        scalars = []
        for row, dt in zip(group_rows, dtypes):
            if row not in trees:
                # float64, as the unfused step's Python floats: arithmetic among scalars (the pending scale,
                # 1 + decay) is done in double, and a scalar is rounded to the compute dtype where it
                # meets a tensor, as a Python scalar is
                trees[row] = _tree(table[row], paths)
            scalars.append(trees[row])
        work_params, back, joins = params_c, None, None
        if group_stored:  # compressed state is decoded here, so that it fuses with the chain
            work_params, updates, group_states, scalars, back, joins = expand_stored(
                params_c, updates, group_states, group_stored, dtypes, scalars, block)
        # the same chain and pending form as the unfused step, with per-tensor ops to trace
        ctx = StepContext(group, [0] * len(work_params), ops=TRACED, scalar_trees=scalars)
        updates = chain.update(updates, group_states, work_params, ctx)
        ctx.apply(work_params, updates)
        if joins:
            write_back(joins, work_params, group_states)
        for p, p_c in zip(group_params, params_c):
            for piece, piece_c in zip(p, p_c) if isinstance(p, tuple) else [(p, p_c)]:
                if piece_c is not piece:
                    piece.copy_(piece_c)
        if back:
            pending += [(entry, [group_states[key][j] for j in pieces]) for key, entry, pieces in back]
    if checking:
        return check_entries(pending)
    ok = every = None
    if guarded:
        scales, ok = check_entries(pending)
        every = None if ok is None else ok.all()
    if pending:  # after every group's chain
        encode_entries(pending, scales, only_if=every)
    if every is not None:
        for target, value in on_entry:
            target.copy_(torch.where(every, target, value))
    return ok


def _tensors(values) -> list[Tensor]:
    """The tensors of a list of tensors, pairs of views and other values."""
    return [t for v in values for t in (v if isinstance(v, tuple) else (v,)) if isinstance(t, Tensor)]


def _copied(value):
    """A copy of a tensor (or of each tensor of a pair of views), so that the checking phase writes nothing."""
    if isinstance(value, tuple):
        return tuple(_copied(v) for v in value)
    return value.clone() if isinstance(value, Tensor) else value


def _in_dtype(t, dtype: torch.dtype):
    """``t`` (a tensor, or the pair of views :func:`~gradkit.core.storage.blocked_views` cuts a param into) in
    ``dtype``."""
    if isinstance(t, tuple):
        return tuple(_in_dtype(x, dtype) for x in t)
    return t if t.dtype == dtype else t.to(dtype)


def _flatten(tree: dict, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], float]]:
    out = []
    for key, value in tree.items():
        out.extend(_flatten(value, prefix + (key,)) if isinstance(value, dict) else [(prefix + (key,), float(value))])
    return out


def _tree(row: Tensor, paths: tuple[tuple[str, ...], ...]) -> dict:
    root: dict = {}
    for column, path in enumerate(paths):
        node = root
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = row[column]
    return root


def _keeps_casts() -> bool:
    """Whether Inductor can be told to keep a rounding to bfloat16 that is read back: the bfloat16+ecc encode
    computes ``x - bf16(x)``, which Inductor otherwise folds to 0 (``emulate_precision_casts``, torch >= 2.5)."""
    import torch._inductor.config as inductor

    return hasattr(inductor, "emulate_precision_casts")


def _inductor_options(stored: bool = False) -> dict:
    import torch._inductor.config as inductor

    # Dynamo's guards already check every input's sizes and strides; Inductor's own per-call asserts of
    # the same would cost more host time than a small step takes.
    options = {"size_asserts": False}
    # Triton's float32 division is approximate by default; the unfused ops round it correctly, and the
    # two paths are meant to agree to float rounding (a memory-bound step has the cycles to spare).
    if hasattr(getattr(inductor, "eager_numerics", None), "division_rounding"):
        options["eager_numerics.division_rounding"] = True
    if stored:
        # A new moment read by the block reductions, the encode and the update would be kept in a full-size
        # float32 buffer under the default thresholds; recomputed from the codes instead, the step is two
        # passes over the state (block scales, then codes and params) and allocates nothing of its size.
        options.update(realize_reads_threshold=64, realize_opcount_threshold=1000)
        if _keeps_casts():
            options["emulate_precision_casts"] = True
    return options


def check_fusable(chain: Chain) -> None:
    """Raise ``ValueError`` naming the transforms of ``chain`` that have no fused form."""
    if not chain.fusable:
        names = sorted({type(t).__name__ for t in chain.transforms if not t.fusable})
        raise ValueError(f"fused=True needs transforms with a fused form; {', '.join(names)} have none (pass fused=False)")


class FusedStep:
    """The compiled step of one param group."""

    def __init__(self, chain: Chain):
        check_fusable(chain)
        self.chain = chain
        self.elementwise = chain_reach(chain) == ELEMENTWISE
        self._compiled = self._compile(stored=False)
        # compiled at the first step with compressed state: the checking phase and the writing phase
        self._compiled_stored: dict[str, object] = {}

    @staticmethod
    def _compile(stored: bool):
        # Dynamo keeps its compile cache (and recompile limit) on the code object: give each program its own.
        program = types.FunctionType(_program.__code__.replace(), _program.__globals__, "gradkit_fused_step",
                                     _program.__defaults__)
        return torch.compile(program, fullgraph=True, dynamic=False, options=_inductor_options(stored))

    def __call__(self, groups: Sequence[FusedGroup], check: Callable[[Tensor], None] | None = None) -> None:
        """Run the step. Where a compressed state could be refused (quantized or ecc storage), ``check`` is given
        one flag per such state (:func:`~gradkit.core.storage.check_entries`) and raises to refuse the step,
        which then has written nothing: with 8-bit codes or ecc a first program that writes nothing computes
        the flags and only then a second writes params, state, codes and scales; with 4-bit codes one
        program selects every write on them."""
        devices = {p.device for g in groups for p in g.params}
        if len(devices) > 1:
            raise ValueError(f"fused=True needs every param on one device, got {sorted(map(str, devices))}: "
                             "use one optimizer per device")
        table, rows, paths = self.scalar_table(groups, next(iter(devices)))
        blocks = tuple(self._block(g) for g in groups)
        groups = [g if block is None else g._replace(**dict(zip(("params", "grads", "stored", "states"), blocked_views(
            g.params, g.grads, g.states, g.stored, block)))) for g, block in zip(groups, blocks)]
        args = (self.chain, tuple(g.group for g in groups), tuple(g.params for g in groups), tuple(g.grads for g in groups),
                tuple(g.states for g in groups), table, rows, paths, tuple(tuple(g.compute_dtypes) for g in groups),
                tuple(g.stored for g in groups), blocks)
        if not any(g.stored for g in groups):
            self._run(self._compiled, args)
            return
        forms = {e[0] for g in groups if g.stored for entries in g.stored.values() for e in entries if e is not None}
        if "ecc" in forms and not _keeps_casts():
            raise ValueError(f"fused=True with state_dtype='bfloat16+ecc' needs torch >= 2.5 (Inductor's "
                             f"emulate_precision_casts), this is torch {torch.__version__}: use fused=False or "
                             "another state_dtype; params and state are unchanged")
        if forms & {"signed4", "sqrt4"}:
            # 4-bit codes: one program whose writes are selected on the flags; a second program would unpack
            # the nibbles again, which costs more than the selects (measured; for 8-bit codes and ecc the
            # other way round)
            ok = self._run(self._stored("guarded"), args + ("guarded",))
            if check is not None and ok is not None:
                check(ok)
            return
        scales = ()
        if forms - {"cast"}:  # a cast (bfloat16) state cannot fail
            scales, ok = self._run(self._stored("check"), args + ("check",))
            if check is not None and ok is not None:
                check(ok)
        self._run(self._stored("write"), args + ("write", scales))

    def _stored(self, phase: str):
        if phase not in self._compiled_stored:
            self._compiled_stored[phase] = self._compile(stored=True)
        return self._compiled_stored[phase]

    @staticmethod
    def _run(compiled, args: tuple):
        limit_hit = getattr(torch._dynamo.exc, "FailOnRecompileLimitHit", None)
        strict = {"fail_on_recompile_limit_hit": True} if limit_hit is not None else {}
        try:
            with torch._dynamo.config.patch(**strict):
                return compiled(*args)
        except Exception as error:
            if limit_hit is None or not isinstance(error, limit_hit):
                raise
            raise RuntimeError(
                f"the fused step was compiled {torch._dynamo.config.recompile_limit} times (each new set of tensors "
                "with a gradient, shapes, dtypes or flags compiles it again); params and state are unchanged. "
                "Pass fused=False, or raise torch._dynamo.config.recompile_limit") from error

    def _block(self, g: FusedGroup) -> int | None:
        """The block size a group's compressed state is stepped in as ``(blocks, block)`` views, or ``None``
        (one working tensor per param): only an elementwise chain may see a param in pieces, and only
        contiguous tensors can be viewed so."""
        if not g.stored or not self.elementwise:
            return None
        sizes = {block_of(e) for entries in g.stored.values() for e in entries if e is not None and e[0] in MAPS}
        tensors = g.params + g.grads + [v for values in g.states.values() for v in values if isinstance(v, Tensor)]
        if len(sizes) != 1 or not all(t.is_contiguous() for t in tensors):
            return None
        if any(isinstance(v, Tensor) and v.numel() != p.numel()  # a state not per element cannot be cut
               for values in g.states.values() for v, p in zip(values, g.params)):
            return None
        return sizes.pop()

    def scalar_table(self, groups: Sequence[FusedGroup], device: torch.device):
        """The distinct rows of scalars as a float64 table on ``device``, the row of every tensor (per
        group) and the path of each column in the chain's scalar tree."""
        # One row per distinct (group, step): which row a tensor reads is compiled in, so it must not
        # depend on the values (groups whose learning rates meet at some step would recompile).
        values: list[list[float]] = []
        paths = None
        rows = []
        for g in groups:
            at_step: dict[int, int] = {}
            for step in dict.fromkeys(g.steps):
                flat = _flatten(self.chain.scalars(g.group, step))
                if paths is None:
                    paths = tuple(path for path, _ in flat)
                elif tuple(path for path, _ in flat) != paths:
                    raise RuntimeError("scalars() must name the same scalars in every group and at every step")
                at_step[step] = len(values)
                values.append([value for _, value in flat])
            rows.append(tuple(at_step[s] for s in g.steps))
        table = torch.tensor(values, dtype=torch.float64, pin_memory=device.type == "cuda")
        return table.to(device, non_blocking=True), tuple(rows), paths
