from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import support


class Small(nn.Module):
    """Matrices of both orientations, a 3-D tensor, an embedding, a head and vectors."""

    def __init__(self, bias: bool = True):
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        self.up = nn.Linear(8, 12, bias=bias)
        self.down = nn.Linear(12, 6, bias=bias)
        self.conv = nn.Conv1d(6, 6, 2, bias=False)
        self.norm = nn.LayerNorm(6) if bias else nn.Identity()
        self.head = nn.Linear(6, 11, bias=False)

    def forward(self, tokens):
        h = torch.tanh(self.up(self.embed(tokens)))
        h = self.down(h)  # (B, T, 6)
        h = self.conv(F.pad(h.transpose(1, 2), (1, 0))).transpose(1, 2)
        return self.head(self.norm(h))


def batch(step: int):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randint(0, 11, (4, 5), generator=g)
    return x, (x * 3 + 1) % 11


def sequence_loss(model, tokens_and_targets):
    x, y = tokens_and_targets
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


def loss_of(model, step):
    return sequence_loss(model, batch(step))


def train(model, opt, steps, start=0, scheduler=None):
    """The shared loop (tests/support.py) on this directory's token batches, step numbers from ``start``."""
    return support.train(model, opt, steps, batch, loss=sequence_loss, start=start, scheduler=scheduler)
