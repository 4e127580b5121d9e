"""The fused step (``gradkit.Optimizer(..., fused=True)``): a whole chain compiled into one program.

The unfused step runs each transform as multi-tensor (foreach) ops, one pass over memory per op.
The fused step traces the chain's fused form (:meth:`GradientTransform.fused_tensor`) for every
tensor of a param group into one graph and compiles it with ``torch.compile`` (Inductor: Triton
kernels on CUDA, C++/OpenMP loops on CPU). Each tensor's whole update then reads the param, the
gradient and each state tensor once and writes the param and its state once.

What keeps the program from recompiling and from synchronising with the host:

- every step-dependent scalar (learning rate, bias corrections, warm-ups) is computed in Python by
  the transforms' ``fused_scalars``, once per distinct step count in the group, and reaches the
  program as one small float64 table, copied to the device without blocking;
- the program reads only flags from the param group (``amsgrad``, ``maximize``); changing one
  traces it again, as does a change of the group's tensors (another number of tensors with a
  gradient, other shapes or dtypes).

Each :class:`FusedStep` has a compile cache of its own; when a group needs more than
``torch._dynamo.config.recompile_limit`` versions the step raises ``RuntimeError`` (params and state
unchanged) instead of running uncompiled.

Low-precision params are read and written in their own dtype and computed in the state dtype inside
the program, so no full-precision copy of them is kept.
"""
from __future__ import annotations

import types
from typing import Sequence

import torch
from torch import Tensor

from gradkit.core.transform import Chain

__all__ = ["FusedStep", "check_fusable"]


def _program(chain: Chain, group: dict, params: list[Tensor], grads: list[Tensor], states: dict[str, list],
             table: Tensor, paths: tuple[tuple[str, ...], ...], compute_dtypes: tuple[torch.dtype, ...]) -> None:
    params_c = [p if p.dtype == dt else p.to(dt) for p, dt in zip(params, compute_dtypes)]
    updates = [g if g.dtype == dt else g.to(dt) for g, dt in zip(grads, compute_dtypes)]
    # One scalar tree per distinct (row, dtype), shared by the tensors that use it: with every tensor at
    # the same step the table has a single row, and the trace stays small.
    trees: dict = {}
    scalars = []
    for i, dt in enumerate(compute_dtypes):
        key = (0 if table.shape[0] == 1 else i, dt)
        if key not in trees:
            trees[key] = _tree(table[key[0]].to(dt), paths)  # rounded to the compute dtype, as Python scalars are
        scalars.append(trees[key])
    pending: list = []
    updates = chain.fused_update(updates, states, params_c, scalars, group, pending)
    for p, p_c, u, (scale, decay) in zip(params, params_c, updates, pending):
        new = p_c if isinstance(decay, float) and decay == 0.0 else p_c * (1.0 + decay)
        new = new + (u if isinstance(scale, float) and scale == 1.0 else u * scale)
        p.copy_(new)


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
        # Dynamo keeps its compile cache (and recompile limit) on the code object: give each group its own.
        program = types.FunctionType(_program.__code__.replace(), _program.__globals__, "gradkit_fused_step")
        # Dynamo's guards already check every input's sizes and strides; Inductor's own per-call asserts
        # of the same would cost more host time than a small step takes.
        self._compiled = torch.compile(program, fullgraph=True, options={"size_asserts": False})

    def __call__(self, group: dict, params: list[Tensor], grads: list[Tensor], states: dict[str, list],
                 steps: Sequence[int], compute_dtypes: Sequence[torch.dtype]) -> None:
        devices = {p.device for p in params}
        if len(devices) > 1:
            raise ValueError(f"fused=True needs the params of a group on one device, got {sorted(map(str, devices))}: "
                             "put each device's params in a group of their own")
        table, paths = self.scalar_table(group, steps, params[0].device)
        limit_hit = getattr(torch._dynamo.exc, "FailOnRecompileLimitHit", None)
        strict = {"fail_on_recompile_limit_hit": True} if limit_hit is not None else {}
        try:
            with torch._dynamo.config.patch(**strict):
                self._compiled(self.chain, group, params, grads, states, table, paths, tuple(compute_dtypes))
        except Exception as error:
            if limit_hit is None or not isinstance(error, limit_hit):
                raise
            raise RuntimeError(
                f"the fused step of this param group was compiled {torch._dynamo.config.recompile_limit} times "
                "(each new set of tensors with a gradient, shapes, dtypes or flags compiles it again); params and "
                "state are unchanged. Pass fused=False, or raise torch._dynamo.config.recompile_limit") from error

    def scalar_table(self, group: dict, steps: Sequence[int], device: torch.device):
        """The scalars as a float64 table on ``device`` (one row when every tensor is at the same step,
        else one row per tensor) and the path of each column in the chain's scalar tree."""
        rows = {s: _flatten(self.chain.fused_scalars(group, s)) for s in dict.fromkeys(steps)}
        paths = tuple(path for path, _ in next(iter(rows.values())))
        if any(tuple(path for path, _ in row) != paths for row in rows.values()):
            raise RuntimeError("fused_scalars must name the same scalars at every step")
        order = steps if len(rows) > 1 else steps[:1]
        values = [[value for _, value in rows[s]] for s in order]
        table = torch.tensor(values, dtype=torch.float64, pin_memory=device.type == "cuda")
        return table.to(device, non_blocking=True), paths
