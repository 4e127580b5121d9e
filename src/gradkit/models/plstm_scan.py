"""The pLSTM recurrence on 1D sequences and 2D grids: a plain recurrent form and a parallel form.

pLSTM (Pöppel et al. 2025, "pLSTM: parallelizable Linear Source Transition Mark networks",
arXiv:2506.11997; official code https://github.com/ml-jku/plstm) is a linear RNN whose state lives on
the *edges* of a directed acyclic graph. On a 2D grid every node ``(x, y)`` has two incoming edges (from
the left ``l`` = ``(x-1, y)`` and from above ``u`` = ``(x, y-1)``) and two outgoing edges (right ``r`` and
down ``d``). With scalar gates per node and head (the paper's vision setting, state-tracking dimension 1)::

    C_r(x,y) = T_rl C_r(x-1,y) + T_ru C_d(x,y-1) + S_r k v^T        (Source: the node writes k v^T)
    C_d(x,y) = T_dl C_r(x-1,y) + T_du C_d(x,y-1) + S_d k v^T        (Transition: edge to edge)
    h(x,y)   = scale * q^T (M_l C_r(x-1,y) + M_u C_d(x,y-1)) + scale * D (q.k) v   (Mark, Direct)

with ``scale = dk ** -0.5`` and every gate taken at ``(x, y)``. A 1D sequence is the special case of a
grid with one column: ``C_t = T_t C_{t-1} + S_t k_t v_t^T`` and ``h_t = scale * (M_t q_t^T C_{t-1} +
D_t (q_t.k_t) v_t)``.

Unrolled, the output is linear attention with a structured mask, ``h(p) = scale * sum_p' G[p, p']
(q_p.k_p') v_p'``, where the gating matrix ``G`` sums, over every edge path from ``p'`` to ``p``, the
product Mark x Transitions x Source. The parallel form works in logarithmic depth: the grid is cut into
1x1 blocks, each described by maps between its border inputs, border outputs and nodes, and neighbouring
blocks are merged pairwise, alternately along x and y (``log2(X) + log2(Y)`` batched merges). At each
merge the second block's nodes read from the first block's nodes through the merged nodes-to-nodes
entries (masked linear attention, block pair by block pair), so ``G`` is never stored whole;
:func:`gating_matrix_2d` builds it for inspection. With ``chunk_size`` the merges stop at chunks and a
recurrence over chunks carries the states across chunk borders. This is the idea of the official
``plstm_2d`` module (combine Source, Transition and Mark matrices of ever larger cells with einsum and
concatenation); the block algebra here is written from the equations above, not from that code. Grid
sides are padded at the far end (to powers of two, or to chunk multiples), which cannot change any real
output because information only flows towards larger x and y.

Departures from the official code: only scalar gates (the official code also allows matrix-valued
transitions, ``JT > 1``, kept bounded by orthogonalisation); no hand-written backward pass (autograd runs
through the merges). The 1D parallel form is chunkwise (``chunk_size``) with a recurrence between
chunks, as the official ``pLSTM1D`` is.
"""
from __future__ import annotations

import torch

__all__ = ["plstm1d_recurrent", "plstm1d_parallel", "plstm2d_recurrent", "plstm2d_parallel", "gating_matrix_2d"]


def _scale(q: torch.Tensor, scale: float | None) -> float:
    return q.shape[-1] ** -0.5 if scale is None else scale


# ---------------------------------------------------------------------------------------------------
# 1D
# ---------------------------------------------------------------------------------------------------
def plstm1d_recurrent(q, k, v, source, transition, mark, direct, scale: float | None = None):
    """Reference: one step per position. ``q, k``: (B, L, dk); ``v``: (B, L, dv); gates: (B, L)."""
    scale = _scale(q, scale)
    batch, length, dk = q.shape
    state = q.new_zeros(batch, dk, v.shape[-1])
    outputs = []
    for t in range(length):
        qt, kt, vt = q[:, t], k[:, t], v[:, t]
        recurrent = mark[:, t, None] * torch.einsum("bd,bde->be", qt, state)
        outputs.append(scale * (recurrent + direct[:, t, None] * (qt * kt).sum(-1, keepdim=True) * vt))
        state = transition[:, t, None, None] * state + source[:, t, None, None] * kt[:, :, None] * vt[:, None, :]
    return torch.stack(outputs, dim=1)


def _chunk_transfer(transition: torch.Tensor) -> torch.Tensor:
    """``P[a, b] = prod_{b < j < a} T_j`` for ``a > b`` (0 on and above the diagonal), in log depth.

    With ``E[i, i-1] = T_i`` (one step of the state), ``P = shift @ (I - E)^-1`` and, ``E`` being
    nilpotent, ``(I - E)^-1 = (I + E)(I + E^2)(I + E^4)...``: products of runs of transitions, never
    ratios of cumulative products, so transitions at or near zero (or negative) are exact.
    """
    n = transition.shape[-1]
    step = torch.diag_embed(transition[..., 1:], offset=-1)
    shift = torch.diag_embed(torch.ones_like(transition[..., 1:]), offset=-1)
    reach = torch.eye(n, dtype=transition.dtype, device=transition.device) + step
    power, span = step, 2
    while span < n:
        power = power @ power
        reach = reach + power @ reach
        span *= 2
    return shift @ reach


def plstm1d_parallel(q, k, v, source, transition, mark, direct, scale: float | None = None, chunk_size: int = 64):
    """Chunkwise-parallel form of :func:`plstm1d_recurrent` (same arguments).

    Inside a chunk of ``chunk_size`` positions the gating matrix is built in log depth and applied as
    masked linear attention; between chunks a recurrence carries the ``(dk, dv)`` state.
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    scale = _scale(q, scale)
    batch, length, dk = q.shape
    dv = v.shape[-1]
    chunk = min(chunk_size, length)
    pad = (-length) % chunk
    if pad:
        q, k, v = (torch.cat([t, t.new_zeros(batch, pad, t.shape[-1])], 1) for t in (q, k, v))
        source, transition, mark, direct = (torch.cat([g, g.new_zeros(batch, pad)], 1) for g in (source, transition, mark, direct))
    nc = q.shape[1] // chunk
    q, k, v = (t.reshape(batch, nc, chunk, t.shape[-1]) for t in (q, k, v))
    source, transition, mark, direct = (g.reshape(batch, nc, chunk) for g in (source, transition, mark, direct))

    transfer = _chunk_transfer(transition)  # (B, nc, c, c): between two positions of a chunk
    gating = mark[..., :, None] * transfer * source[..., None, :] + torch.diag_embed(direct)
    scores = torch.einsum("bnad,bnzd->bnaz", q, k) * gating
    intra = torch.einsum("bnaz,bnze->bnae", scores, v)

    # Into the chunk: prod of T over positions before a inside the chunk; out of it: after z.
    ones = torch.ones_like(transition[..., :1])
    into = torch.cumprod(torch.cat([ones, transition[..., :-1]], -1), -1)  # product of T_0..T_{a-1}
    mark_in = mark * into  # (B, nc, c): weight of the entering state in output a
    # Weight of k_z v_z in the state leaving the chunk: S_z * prod_{z < j < c} T_j.
    after = torch.flip(torch.cumprod(torch.flip(torch.cat([transition[..., 1:], ones], -1), [-1]), -1), [-1])
    source_out = source * after
    chunk_transition = into[..., -1] * transition[..., -1]
    chunk_states = torch.einsum("bnz,bnzd,bnze->bnde", source_out, k, v)

    state = q.new_zeros(batch, dk, dv)
    inter = []
    for c in range(nc):
        inter.append(torch.einsum("ba,bad,bde->bae", mark_in[:, c], q[:, c], state))
        state = chunk_transition[:, c, None, None] * state + chunk_states[:, c]
    out = scale * (intra + torch.stack(inter, 1))
    return out.reshape(batch, nc * chunk, dv)[:, :length]


# ---------------------------------------------------------------------------------------------------
# 2D
# ---------------------------------------------------------------------------------------------------
def plstm2d_recurrent(q, k, v, source_r, source_d, t_rl, t_ru, t_dl, t_du, mark_l, mark_u, direct,
                      scale: float | None = None):
    """Reference: one node at a time in raster order. ``q, k``: (B, X, Y, dk); ``v``: (B, X, Y, dv);
    gates: (B, X, Y); see the module docstring for the recurrence."""
    scale = _scale(q, scale)
    batch, nx, ny, dk = q.shape
    dv = v.shape[-1]
    zero = q.new_zeros(batch, dk, dv)
    right = [zero] * ny  # C_r leaving the previous column, one per y
    rows = []
    for x in range(nx):
        down = zero
        column = []
        for y in range(ny):
            c_l, c_u = right[y], down
            qq, kk, vv = q[:, x, y], k[:, x, y], v[:, x, y]
            g = lambda gate: gate[:, x, y, None, None]  # noqa: E731 - a gate at this node, broadcast over the state
            read = torch.einsum("bd,bde->be", qq, mark_l[:, x, y, None, None] * c_l + mark_u[:, x, y, None, None] * c_u)
            column.append(scale * (read + direct[:, x, y, None] * (qq * kk).sum(-1, keepdim=True) * vv))
            kv = kk[:, :, None] * vv[:, None, :]
            right[y] = g(t_rl) * c_l + g(t_ru) * c_u + g(source_r) * kv
            down = g(t_dl) * c_l + g(t_du) * c_u + g(source_d) * kv
        rows.append(torch.stack(column, 1))
    return torch.stack(rows, 1)


def _next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


_NODE_KEYS = ("q", "k", "v", "out")


def _attend(blocks_a: dict, blocks_b: dict, cross: torch.Tensor) -> torch.Tensor:
    """Block B's outputs plus what its nodes read from block A's nodes through ``cross``."""
    scores = torch.einsum("...xyd,...uwd->...xyuw", blocks_b["q"], blocks_a["k"]) * cross
    return blocks_b["out"] + torch.einsum("...xyuw,...uwe->...xye", scores, blocks_a["v"])


def _merge_x(blocks: dict, keep_maps: bool = True) -> dict:
    """Merge neighbouring blocks along x (block A left of block B; both of height h).

    Maps: ``t_**`` border to border, ``s_*`` nodes to border, ``m_*`` border to nodes; optional ``g``
    (nodes to nodes) and node tensors ``q, k, v, out`` (then B's outputs take in what they read from A).
    """
    a = {key: val[:, 0::2] for key, val in blocks.items()}
    b = {key: val[:, 1::2] for key, val in blocks.items()}
    lead = a["t_rl"].shape[:-2]
    h, wa, wb = a["t_rl"].shape[-1], a["t_du"].shape[-1], b["t_du"].shape[-1]
    na, nb = wa * h, wb * h
    a_sr = a["s_r"].reshape(*lead, h, na)
    b_ml = b["m_l"].reshape(*lead, nb, h)
    cross = (b_ml @ a_sr).reshape(*lead, wb, h, wa, h)
    out = {}
    if "g" in blocks:
        out["g"] = torch.cat([
            torch.cat([a["g"], a["g"].new_zeros(*lead, wa, h, wb, h)], -2),
            torch.cat([cross, b["g"]], -2)], -4)
    if "q" in blocks:
        b["out"] = _attend(a, b, cross)
        out.update({key: torch.cat([a[key], b[key]], -3) for key in _NODE_KEYS})
    if not keep_maps:
        return out
    out["t_rl"] = b["t_rl"] @ a["t_rl"]
    out["t_ru"] = torch.cat([b["t_rl"] @ a["t_ru"], b["t_ru"]], -1)
    out["t_dl"] = torch.cat([a["t_dl"], b["t_dl"] @ a["t_rl"]], -2)
    out["t_du"] = torch.cat([
        torch.cat([a["t_du"], a["t_du"].new_zeros(*lead, wa, wb)], -1),
        torch.cat([b["t_dl"] @ a["t_ru"], b["t_du"]], -1)], -2)
    out["s_r"] = torch.cat([(b["t_rl"] @ a_sr).reshape(*lead, h, wa, h), b["s_r"]], -2)
    out["s_d"] = torch.cat([
        torch.cat([a["s_d"], a["s_d"].new_zeros(*lead, wa, wb, h)], -2),
        torch.cat([(b["t_dl"] @ a_sr).reshape(*lead, wb, wa, h), b["s_d"]], -2)], -3)
    out["m_l"] = torch.cat([a["m_l"], (b_ml @ a["t_rl"]).reshape(*lead, wb, h, h)], -3)
    out["m_u"] = torch.cat([
        torch.cat([a["m_u"], a["m_u"].new_zeros(*lead, wa, h, wb)], -1),
        torch.cat([(b_ml @ a["t_ru"]).reshape(*lead, wb, h, wa), b["m_u"]], -1)], -3)
    return out


def _merge_y(blocks: dict, keep_maps: bool = True) -> dict:
    """Merge neighbouring blocks along y (block A above block B; both of width w); see :func:`_merge_x`."""
    a = {key: val[:, :, 0::2] for key, val in blocks.items()}
    b = {key: val[:, :, 1::2] for key, val in blocks.items()}
    lead = a["t_du"].shape[:-2]
    w, ha, hb = a["t_du"].shape[-1], a["t_rl"].shape[-1], b["t_rl"].shape[-1]
    na, nb = w * ha, w * hb
    a_sd = a["s_d"].reshape(*lead, w, na)
    b_mu = b["m_u"].reshape(*lead, nb, w)
    cross = (b_mu @ a_sd).reshape(*lead, w, hb, w, ha)
    out = {}
    if "g" in blocks:
        out["g"] = torch.cat([
            torch.cat([a["g"], a["g"].new_zeros(*lead, w, ha, w, hb)], -1),
            torch.cat([cross, b["g"]], -1)], -3)
    if "q" in blocks:
        b["out"] = _attend(a, b, cross)
        out.update({key: torch.cat([a[key], b[key]], -2) for key in _NODE_KEYS})
    if not keep_maps:
        return out
    out["t_du"] = b["t_du"] @ a["t_du"]
    out["t_dl"] = torch.cat([b["t_du"] @ a["t_dl"], b["t_dl"]], -1)
    out["t_ru"] = torch.cat([a["t_ru"], b["t_ru"] @ a["t_du"]], -2)
    out["t_rl"] = torch.cat([
        torch.cat([a["t_rl"], a["t_rl"].new_zeros(*lead, ha, hb)], -1),
        torch.cat([b["t_ru"] @ a["t_dl"], b["t_rl"]], -1)], -2)
    out["s_d"] = torch.cat([(b["t_du"] @ a_sd).reshape(*lead, w, w, ha), b["s_d"]], -1)
    out["s_r"] = torch.cat([
        torch.cat([a["s_r"], a["s_r"].new_zeros(*lead, ha, w, hb)], -1),
        torch.cat([(b["t_ru"] @ a_sd).reshape(*lead, hb, w, ha), b["s_r"]], -1)], -3)
    out["m_u"] = torch.cat([a["m_u"], (b_mu @ a["t_du"]).reshape(*lead, w, hb, w)], -2)
    out["m_l"] = torch.cat([
        torch.cat([a["m_l"], a["m_l"].new_zeros(*lead, w, ha, hb)], -1),
        torch.cat([(b_mu @ a["t_dl"]).reshape(*lead, w, hb, ha), b["m_l"]], -1)], -2)
    return out


def _grid_blocks(gates, block: tuple[int, int], nodes=None, gating: bool = False, keep_maps: bool = True) -> dict:
    """Merge 1x1 cells into blocks of ``block`` = (bx, by) cells (powers of two).

    ``gates``: the eight (B, X, Y) gates, X and Y multiples of the block sides. ``nodes``: optional
    (q, k, v), each (B, X, Y, d): the blocks then carry their nodes' outputs from inside the block
    (without the Direct term). ``gating``: carry the nodes-to-nodes map ``g``. ``keep_maps=False`` drops
    the border maps after the last merge (the whole grid needs none). Leading dims of the result:
    (B, X/bx, Y/by).
    """
    s_r, s_d, trl, tru, tdl, tdu, m_l, m_u = gates
    batch, nx, ny = s_r.shape
    cell = lambda g, n: g.reshape(batch, nx, ny, *([1] * n))  # noqa: E731 - a 1x1 block's map
    blocks = {
        "t_rl": cell(trl, 2), "t_ru": cell(tru, 2), "t_dl": cell(tdl, 2), "t_du": cell(tdu, 2),
        "s_r": cell(s_r, 3), "s_d": cell(s_d, 3), "m_l": cell(m_l, 3), "m_u": cell(m_u, 3),
    }
    if gating:
        blocks["g"] = s_r.new_zeros(batch, nx, ny, 1, 1, 1, 1)
    if nodes is not None:
        q, k, v = (t[:, :, :, None, None, :] for t in nodes)
        blocks.update(q=q, k=k, v=v, out=v.new_zeros(v.shape))
    width, height = 1, 1
    while width < block[0] or height < block[1]:
        if width < block[0]:
            width *= 2
            blocks = _merge_x(blocks, keep_maps or width < block[0] or height < block[1])
        if height < block[1]:
            height *= 2
            blocks = _merge_y(blocks, keep_maps or width < block[0] or height < block[1])
    return blocks


def _pad_grid(tensors, px: int, py: int):
    """Zero-pad (B, X, Y, ...) tensors at the far end of x and y to (B, px, py, ...)."""
    out = []
    for t in tensors:
        nx, ny = t.shape[1], t.shape[2]
        if (nx, ny) != (px, py):
            t = torch.cat([t, t.new_zeros(t.shape[0], px - nx, *t.shape[2:])], 1)
            t = torch.cat([t, t.new_zeros(t.shape[0], px, py - ny, *t.shape[3:])], 2)
        out.append(t)
    return out


def gating_matrix_2d(source_r, source_d, t_rl, t_ru, t_dl, t_du, mark_l, mark_u, direct) -> torch.Tensor:
    """The gating matrix ``G[b, x, y, x', y']`` of a grid (gates: (B, X, Y)), in log depth.

    ``G`` is the weight of node ``(x', y')``'s ``k v^T`` in the output at ``(x, y)``: the Direct gate on
    the diagonal, and Mark x (sum over edge paths of products of Transitions) x Source elsewhere.
    """
    _, nx, ny = source_r.shape
    px, py = _next_pow2(nx), _next_pow2(ny)
    gates = _pad_grid([source_r, source_d, t_rl, t_ru, t_dl, t_du, mark_l, mark_u], px, py)
    g = _grid_blocks(gates, (px, py), gating=True, keep_maps=False)["g"][:, 0, 0][:, :nx, :ny, :nx, :ny]
    eye = torch.eye(nx * ny, dtype=g.dtype, device=g.device).reshape(nx, ny, nx, ny)
    return g + direct[:, :, :, None, None] * eye


def plstm2d_parallel(q, k, v, source_r, source_d, t_rl, t_ru, t_dl, t_du, mark_l, mark_u, direct,
                     scale: float | None = None, chunk_size: int | None = None):
    """Parallel form of :func:`plstm2d_recurrent` (same arguments).

    ``chunk_size=None``: blocks are merged up to the whole grid; at every merge the nodes of the second
    block read from those of the first through the block's gating entries (masked linear attention,
    block pair by block pair, so the full gating matrix is never stored). ``chunk_size=c`` (a power of
    two): the same up to ``c`` x ``c`` chunks, then a recurrence over the chunks carries the ``(dk, dv)``
    states across chunk borders.
    """
    scale = _scale(q, scale)
    batch, nx, ny, dk = q.shape
    dv = v.shape[-1]
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1 or chunk_size & (chunk_size - 1)):
        raise ValueError(f"chunk_size must be None or a power of two, got {chunk_size!r}")
    local = direct[..., None] * (q * k).sum(-1, keepdim=True) * v  # the Direct term, node by node
    px, py = _next_pow2(nx), _next_pow2(ny)
    if chunk_size is None or (chunk_size >= px and chunk_size >= py):
        padded = _pad_grid([q, k, v, source_r, source_d, t_rl, t_ru, t_dl, t_du, mark_l, mark_u], px, py)
        blocks = _grid_blocks(padded[3:], (px, py), nodes=padded[:3], keep_maps=False)
        return scale * (blocks["out"][:, 0, 0, :nx, :ny] + local)
    cx, cy = min(chunk_size, px), min(chunk_size, py)
    px, py = -(-nx // cx) * cx, -(-ny // cy) * cy
    padded = _pad_grid([q, k, v, source_r, source_d, t_rl, t_ru, t_dl, t_du, mark_l, mark_u], px, py)
    blocks = _grid_blocks(padded[3:], (cx, cy), nodes=padded[:3])
    ncx, ncy = px // cx, py // cy
    q, k, v = blocks["q"], blocks["k"], blocks["v"]  # (B, ncx, ncy, cx, cy, d)
    kv_r = torch.einsum("bijaxy,bijxyd,bijxye->bijade", blocks["s_r"], k, v)  # into the right border
    kv_d = torch.einsum("bijaxy,bijxyd,bijxye->bijade", blocks["s_d"], k, v)  # into the bottom border
    zero_r, zero_d = q.new_zeros(batch, cy, dk, dv), q.new_zeros(batch, cx, dk, dv)
    right = [zero_r] * ncy  # states entering each chunk row from the left
    columns = []
    for i in range(ncx):
        down = zero_d
        column = []
        for j in range(ncy):
            left = right[j]
            read = (torch.einsum("bxya,bxyd,bade->bxye", blocks["m_l"][:, i, j], q[:, i, j], left)
                    + torch.einsum("bxya,bxyd,bade->bxye", blocks["m_u"][:, i, j], q[:, i, j], down))
            column.append(read)
            right[j] = (torch.einsum("bac,bcde->bade", blocks["t_rl"][:, i, j], left)
                        + torch.einsum("bac,bcde->bade", blocks["t_ru"][:, i, j], down) + kv_r[:, i, j])
            down = (torch.einsum("bac,bcde->bade", blocks["t_dl"][:, i, j], left)
                    + torch.einsum("bac,bcde->bade", blocks["t_du"][:, i, j], down) + kv_d[:, i, j])
        columns.append(torch.stack(column, 1))
    out = blocks["out"] + torch.stack(columns, 1)  # (B, ncx, ncy, cx, cy, dv)
    out = out.transpose(2, 3).reshape(batch, px, py, dv)[:, :nx, :ny]
    return scale * (out + local)
