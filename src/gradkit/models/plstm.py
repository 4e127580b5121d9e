"""pLSTM layers for 1D sequences and 2D grids (P-mode and D-mode), multi-head.

Pöppel, Freinschlag, Schmied, Lin, Hochreiter 2025, "pLSTM: parallelizable Linear Source Transition
Mark networks", arXiv:2506.11997; official code https://github.com/ml-jku/plstm (layers
``plstm_1d_layer.py``, ``plstm_2d_layer.py``), experiments https://github.com/ml-jku/plstm_experiments.

A layer maps ``x`` to queries, keys and values (one linear map each, ``num_heads`` heads) and to the
gates of :mod:`gradkit.models.plstm_scan`; the recurrence runs per head, each head's output goes through
an RMS norm of its own (the paper's multi-head norm), and a linear map projects back to ``dim``.

Gate parametrisations (the official code's defaults in the paper's vision model):

* Source, Mark, Direct: ``sigmoid(b + W x)`` (``exp(logsigmoid)`` in the official code), biases
  -4, -4, -6, ``W`` zero at init; Direct has no ``W``.
* Transition: ``tanh(5 (b + W x))`` with ``b = 1`` at init, so ``|T| <= 1`` and ``T ~ 1`` at init.
* P-mode (directed propagation): an orientation gate ``o = sigmoid(b_o + 0.5 W_o x / dim)`` (biases
  spread over ``[-2, 2]`` across heads) splits what reaches a node between its two outgoing edges:
  ``S_r = o S``, ``S_d = 1 - o S`` and, from either incoming edge, ``T_r = o tau``, ``T_d = (1 - o) tau``.
  So the absolute Transitions leaving an incoming edge sum to ``|tau| <= 1`` (the paper's P-mode
  condition): along every anti-diagonal the total weight never grows.
* D-mode (diffusive distribution): separate gates for ``T_rl``, ``T_du`` and one crossing edge
  (``T_ru`` for chirality "L", ``T_dl`` for "R"), the other crossing removed. The line graph becomes a
  multitree (at most one edge path between two edges), so ``|T| <= 1`` per Transition bounds every
  path sum.
* 2D layers run the grid from all four corners (``orientations``: bit 0 flips x, bit 1 flips y), with
  gates per orientation and head, shared q, k, v, and average the four outputs.

Departures from the official code, each for a stated reason:

* P-mode Transitions: the official code uses ``T_d = 1 - o tau``, which meets the paper's bound only when
  ``tau >= 0`` (``tau = tanh(.)`` may be negative; then ``|T_r| + |T_d| = 1 + 2|o tau|``). Here
  ``T_d = (1 - o) tau`` (``normalization="paper"``); ``normalization="official"`` gives the official form
  (identical while ``tau ~ 1``), used by the parity test.
* Orientations: the official layer computes its y-flip as ``(orientation >> 2) % 2``, which is 0 for all
  of 0..3, so its four "orientations" are two directions twice; here orientation ``i`` flips y when
  ``i & 2``, giving the four corners.
* Scalar state tracking only (``JK = JV = JQ = JO = JT = 1``, as in the paper's vision models); no
  additional convolution or pass-through branch (both off in the paper's vision configuration).
* ``normalization="none"`` removes the bound on purpose (P-mode: independent ``T_r`` and ``T_d`` gates;
  D-mode: both crossing Transitions; 1D: the Transition is ``b + W x`` without ``tanh``), to show what the
  normalisation prevents.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .plstm_scan import plstm1d_parallel, plstm1d_recurrent, plstm2d_parallel, plstm2d_recurrent

__all__ = ["PLSTM1D", "PLSTM2D", "MultiHeadRMSNorm"]

_FORMS = ("parallel", "recurrent")
_NORMALIZATIONS = ("paper", "official", "none")


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


class _Gate(nn.Module):
    """``b + W x`` per gate head; ``W`` is block-diagonal over ``groups`` slices of the input.

    The official layers give each gate head its own ``dim / groups`` slice of ``x`` ("sub-heads"); the
    gate index is ``(h // groups) * groups + slice``, as there.
    """

    def __init__(self, dim: int, heads: int, groups: int, bias: float | torch.Tensor, input_dependent: bool = True):
        super().__init__()
        if heads % groups or dim % groups:
            raise ValueError(f"gate groups ({groups}) must divide both the gate heads ({heads}) and dim ({dim})")
        self.groups = groups
        self.bias = nn.Parameter(torch.empty(heads))
        with torch.no_grad():
            self.bias.copy_(torch.as_tensor(bias, dtype=torch.float32).expand(heads))
        self.weight = nn.Parameter(torch.zeros(heads // groups, groups, dim // groups)) if input_dependent else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            return self.bias.expand(*x.shape[:-1], -1)
        sliced = x.reshape(*x.shape[:-1], self.groups, x.shape[-1] // self.groups)
        return self.bias + torch.einsum("agd,...gd->...ag", self.weight, sliced).flatten(-2)


class MultiHeadRMSNorm(nn.Module):
    """RMS norm over each head's features, with a learned scale per head and feature."""

    def __init__(self, num_heads: int, head_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_heads, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., H, dh)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class _PLSTMBase(nn.Module):
    def __init__(self, dim: int, num_heads: int, form: str, normalization: str):
        super().__init__()
        if not isinstance(dim, int) or dim < 1 or not isinstance(num_heads, int) or num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim!r}) must be a positive multiple of num_heads ({num_heads!r})")
        _check_choice("form", form, _FORMS)
        _check_choice("normalization", normalization, _NORMALIZATIONS)
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.form, self.normalization = form, normalization
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.norm = MultiHeadRMSNorm(num_heads, self.head_dim)
        self.out = nn.Linear(dim, dim, bias=False)
        small = math.sqrt(2 / (5 * dim))  # the official "small init" (Nguyen & Salazar 2019)
        for lin in (self.query, self.key, self.value, self.out):
            nn.init.normal_(lin.weight, std=small)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        self.direct = _Gate(dim, num_heads, 1, -6.0, input_dependent=False)

    def _transition(self, pre: torch.Tensor) -> torch.Tensor:
        return pre if self.normalization == "none" else torch.tanh(5.0 * pre)

    def _qkv(self, x: torch.Tensor):
        heads = (*x.shape[:-1], self.num_heads, self.head_dim)
        return self.query(x).view(heads), self.key(x).view(heads), self.value(x).view(heads)


class PLSTM1D(_PLSTMBase):
    """pLSTM on sequences: ``(B, L, dim) -> (B, L, dim)``, causal.

    On a line every node has one incoming and one outgoing edge, so P-mode and D-mode coincide: the
    Transition ``tanh(5 (b + W x))`` lies in ``[-1, 1]``.

    Args:
        dim: model width; num_heads: heads (``dim`` must be a multiple).
        form: "parallel" (chunkwise, ``chunk_size`` positions per chunk) or "recurrent" (the reference).
        normalization: "paper" / "official" (the same in 1D) or "none" (unbounded Transition).
    """

    def __init__(self, dim: int, num_heads: int = 1, *, form: str = "parallel", chunk_size: int = 64,
                 normalization: str = "paper"):
        super().__init__(dim, num_heads, form, normalization)
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        self.chunk_size = chunk_size
        self.source = _Gate(dim, num_heads, num_heads, -4.0)
        self.transition = _Gate(dim, num_heads, num_heads, 1.0)
        self.mark = _Gate(dim, num_heads, num_heads, -4.0)

    def gates(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every gate at every position: ``{name: (B, L, num_heads)}``."""
        return {"source": torch.sigmoid(self.source(x)), "transition": self._transition(self.transition(x)),
                "mark": torch.sigmoid(self.mark(x)), "direct": torch.sigmoid(self.direct(x))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (batch, length, {self.dim}), got {tuple(x.shape)}")
        b, length, _ = x.shape
        q, k, v = (t.permute(0, 2, 1, 3).reshape(b * self.num_heads, length, self.head_dim) for t in self._qkv(x))
        gates = self.gates(x)
        gates = [gates[n].permute(0, 2, 1).reshape(b * self.num_heads, length) for n in ("source", "transition", "mark", "direct")]
        if self.form == "parallel":
            h = plstm1d_parallel(q, k, v, *gates, chunk_size=self.chunk_size)
        else:
            h = plstm1d_recurrent(q, k, v, *gates)
        h = self.norm(h.view(b, self.num_heads, length, self.head_dim).transpose(1, 2))
        return self.out(h.reshape(b, length, self.dim))


class PLSTM2D(_PLSTMBase):
    """pLSTM on grids: ``(B, X, Y, dim) -> (B, X, Y, dim)``, from every corner in ``orientations``.

    Args:
        dim, num_heads: as :class:`PLSTM1D`.
        mode: "P" (directed propagation) or "D" (diffusive distribution); see the module docstring.
        orientations: corners to run from (bit 0 flips x, bit 1 flips y); default all four.
        chirality: D-mode's crossing Transition, "L" (``T_ru``: down-going state turns right) or "R".
        gate_groups: input slices of the Source/Transition/Mark gates (default: one per gate head, i.e.
            ``len(orientations) * num_heads`` as in the paper's vision model, or their greatest common
            divisor with ``dim`` when ``dim`` has fewer features than that).
        form: "parallel" (log-depth gating matrix) or "recurrent" (node by node, the reference).
        chunk_size: parallel form only: None builds the gating matrix of the whole grid; a power of two
            builds it per chunk and runs a recurrence between chunks (less memory on large grids).
        normalization: "paper", "official" or "none"; see the module docstring.
    """

    def __init__(self, dim: int, num_heads: int = 1, *, mode: str = "P", orientations=(0, 1, 2, 3),
                 chirality: str = "L", gate_groups: int | None = None, form: str = "parallel",
                 chunk_size: int | None = None, normalization: str = "paper"):
        super().__init__(dim, num_heads, form, normalization)
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1 or chunk_size & (chunk_size - 1)):
            raise ValueError(f"chunk_size must be None or a power of two, got {chunk_size!r}")
        self.chunk_size = chunk_size
        _check_choice("mode", mode, ("P", "D"))
        _check_choice("chirality", chirality, ("L", "R"))
        orientations = tuple(orientations)
        if not orientations or any(o not in (0, 1, 2, 3) for o in orientations) or len(set(orientations)) != len(orientations):
            raise ValueError(f"orientations must be distinct values from 0, 1, 2, 3; got {orientations!r}")
        self.mode, self.orientations, self.chirality = mode, orientations, chirality
        heads = len(orientations) * num_heads
        groups = math.gcd(heads, dim) if gate_groups is None else gate_groups
        if mode == "P":
            # A dense (not sliced) map, biases spread over [-2, 2] across heads, as in the official layer.
            self.orientation_bias = nn.Parameter(torch.linspace(-2.0, 2.0, num_heads).repeat(len(orientations)))
            self.orientation_weight = nn.Parameter(torch.zeros(heads, dim))
            self.source = _Gate(dim, heads, groups, -4.0)
            self.transition = _Gate(dim, heads, groups, 1.0)
            self.mark = _Gate(dim, heads, groups, -4.0)
            if normalization == "none":
                self.transition_d = _Gate(dim, heads, groups, 1.0)
        else:
            self.source_r = _Gate(dim, heads, groups, -4.0)
            self.source_d = _Gate(dim, heads, groups, -4.0)
            self.transition_r = _Gate(dim, heads, groups, 1.0)
            self.transition_d = _Gate(dim, heads, groups, 1.0)
            self.transition_cross = _Gate(dim, heads, groups, 1.0)
            self.mark_l = _Gate(dim, heads, groups, -4.0)
            self.mark_u = _Gate(dim, heads, groups, -4.0)

    def gates(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every gate at every node: ``{name: (B, X, Y, len(orientations) * num_heads)}`` (zeros for
        a Transition the mode removes); ``direct`` is (B, X, Y, num_heads)."""
        if self.mode == "P":
            # Scaled by 0.5 / dim as in the official code: the orientation moves slowly with x.
            o = torch.sigmoid(self.orientation_bias + (0.5 / self.dim) * x @ self.orientation_weight.T)
            tau = self._transition(self.transition(x))
            s_r = o * torch.sigmoid(self.source(x))
            mark = torch.sigmoid(self.mark(x))
            t_r = o * tau
            if self.normalization == "paper":
                t_d = (1 - o) * tau
            elif self.normalization == "official":
                t_d = 1 - t_r
            else:  # no split: each outgoing edge takes a free Transition of its own
                t_r, t_d = tau, self._transition(self.transition_d(x))
            out = dict(source_r=s_r, source_d=1 - s_r, t_rl=t_r, t_ru=t_r, t_dl=t_d, t_du=t_d, mark_l=mark, mark_u=mark)
        else:
            cross = self._transition(self.transition_cross(x))
            zero = torch.zeros_like(cross)
            both = self.normalization == "none"
            out = dict(
                source_r=torch.sigmoid(self.source_r(x)), source_d=torch.sigmoid(self.source_d(x)),
                t_rl=self._transition(self.transition_r(x)), t_du=self._transition(self.transition_d(x)),
                t_ru=cross if (self.chirality == "L" or both) else zero,
                t_dl=cross if (self.chirality == "R" or both) else zero,
                mark_l=torch.sigmoid(self.mark_l(x)), mark_u=torch.sigmoid(self.mark_u(x)))
        out["direct"] = torch.sigmoid(self.direct(x))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (batch, X, Y, {self.dim}), got {tuple(x.shape)}")
        b, nx, ny, _ = x.shape
        heads, n_or = self.num_heads, len(self.orientations)
        q, k, v = self._qkv(x)  # (B, X, Y, H, dh)
        gates = self.gates(x)
        direct = gates.pop("direct")
        names = ["source_r", "source_d", "t_rl", "t_ru", "t_dl", "t_du", "mark_l", "mark_u"]
        flips = [[axis for axis, bit in ((1, 1), (2, 2)) if o & bit] for o in self.orientations]

        def per_orientation(t: torch.Tensor, shared: bool) -> torch.Tensor:
            # -> (n_or * B * H, X, Y, ...): orientation-major, heads folded into the batch
            parts = []
            for i, axes in enumerate(flips):
                part = t if shared else t[..., i * heads:(i + 1) * heads]
                part = part.flip(axes) if axes else part
                parts.append(part.movedim(3, 1).reshape(b * heads, nx, ny, *t.shape[4:]))
            return torch.cat(parts, 0)

        qs, ks, vs = (per_orientation(t, True) for t in (q, k, v))
        gate_args = [per_orientation(gates[n], False) for n in names]
        direct = per_orientation(direct, True)
        if self.form == "parallel":
            h = plstm2d_parallel(qs, ks, vs, *gate_args, direct, chunk_size=self.chunk_size)
        else:
            h = plstm2d_recurrent(qs, ks, vs, *gate_args, direct)  # (n_or * B * H, X, Y, dh)
        h = h.view(n_or, b, heads, nx, ny, self.head_dim).movedim(2, 4)  # (n_or, B, X, Y, H, dh)
        h = self.norm(h)
        h = torch.stack([h[i].flip(axes) if axes else h[i] for i, axes in enumerate(flips)]).mean(0)
        return self.out(h.reshape(b, nx, ny, self.dim))
