"""The CPU block-by-block step computes what the whole-tensor step computes.

EXAdam, diffGrad and Grams run their elementwise step block by block on CPU and leave it pending as a
quotient elsewhere; both paths must give the same parameters (up to float rounding), also when a block
cuts through tensors and when tensors are at different steps (per-tensor scalars mapped to pieces).
"""
from __future__ import annotations

import pytest
import torch

import gradkit.transforms._blocked as blocked
from gradkit.optim import DiffGrad, EXAdam, Grams

OPTIMIZERS = {
    "exadam": lambda p: EXAdam(p, lr=1e-2, weight_decay=0.1, dynamic_step_size=True),
    "exadam_staggered": lambda p: EXAdam(p, lr=1e-2),
    "diffgrad": lambda p: DiffGrad(p, lr=1e-2, weight_decay=0.1),
    "grams": lambda p: Grams(p, lr=1e-2, weight_decay=0.1),
    "grams_paper": lambda p: Grams(p, lr=1e-2, eps_placement="paper"),
}
SHAPES = [(7, 5), (13,), (3, 4, 2), (1,), (0, 3)]


def test_blocks_cover_every_element_once():
    tensors = [torch.arange(float(torch.Size(s).numel())).reshape(s) for s in SHAPES]
    others = [t.clone() for t in tensors]
    seen = [torch.zeros_like(t).view(-1) for t in tensors]
    for owners, (pieces, twins) in blocked.blocks(tensors, others, size=6):
        assert sum(p.numel() for p in pieces) <= 6
        for i, piece, twin in zip(owners, pieces, twins):
            assert torch.equal(piece, twin)
            start = piece.storage_offset() - tensors[i].storage_offset()
            seen[i][start:start + piece.numel()] += 1
    assert all(bool((s == 1).all()) for s in seen)


def test_one_block_when_not_worth_splitting():
    small = [torch.randn(4, 3), torch.randn(5)]  # fits in one block
    strided = [torch.randn(40, 30).t(), torch.randn(5)]  # non-contiguous: cannot be cut into 1-D slices
    for tensors, size in ((small, 100), (strided, 20)):
        ((owners, (pieces,)),) = list(blocked.blocks(tensors, size=size))
        assert owners == [0, 1] and all(p is t for p, t in zip(pieces, tensors))
    assert not blocked.is_blocked(small)


def _run(make_opt, staggered: bool, steps: int = 12):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
    grads = [[torch.randn(s) for s in SHAPES] for _ in range(steps)]
    opt = make_opt(params)
    for t in range(steps):
        for i, (p, g) in enumerate(zip(params, grads[t])):
            p.grad = None if staggered and i == 1 and t < 4 else g.clone()
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_blocked_step_matches_whole_tensor_step(name, monkeypatch):
    make_opt, staggered = OPTIMIZERS[name], name.endswith("staggered")
    monkeypatch.setattr(blocked, "BLOCK_ELEMENTS", 6)  # blocks cut through tensors and group small ones
    small_blocks = _run(make_opt, staggered)
    monkeypatch.setattr(blocked, "BLOCK_ELEMENTS", 40)  # whole small tensors, the largest two cut
    large_blocks = _run(make_opt, staggered)
    monkeypatch.setattr(blocked, "is_blocked", lambda *lists: False)
    pending = _run(make_opt, staggered)
    for a, b, c in zip(small_blocks, large_blocks, pending):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(a, c, rtol=1e-6, atol=1e-7)
