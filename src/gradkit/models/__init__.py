"""Small models shared by the arena, the examples and the tests.

``DigitsCNN`` has batch-normalised convolutions, so its conv weights are scale-invariant (the
AdamP setting). ``TinyLM`` is a LLaMA-style byte-level decoder: RMSNorm, rotary position
embeddings, SwiGLU feed-forward and causal attention.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["digits_mlp", "DigitsCNN", "TinyLM"]


def digits_mlp(hidden: int = 64, depth: int = 2, num_classes: int = 10) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = 64
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class DigitsCNN(nn.Module):
    """conv-BN-ReLU x2, global average pool, linear head; input (N, 1, 8, 8)."""

    def __init__(self, channels: int = 16, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * channels)
        self.head = nn.Linear(2 * channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.head(x.mean(dim=(2, 3)))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., ::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.heads = heads
        self.attn_norm = RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.mlp_norm = RMSNorm(dim)
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = _rotary(q, cos, sin), _rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class TinyLM(nn.Module):
    """Byte-level LLaMA-style language model (vocabulary of 256 bytes)."""

    def __init__(self, dim: int = 128, depth: int = 2, heads: int = 4, context: int = 128, hidden: int | None = None):
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"dim must be divisible by heads into an even head size, got dim={dim}, heads={heads}")
        self.context = context
        self.embed = nn.Embedding(256, dim)
        self.blocks = nn.ModuleList(_Block(dim, heads, hidden or 4 * dim * 2 // 3 // 8 * 8) for _ in range(depth))
        self.norm = RMSNorm(dim)
        self.head = nn.Linear(dim, 256, bias=False)
        half = dim // heads // 2
        freqs = 1.0 / (10000 ** (torch.arange(half, dtype=torch.float32) / half))
        angles = torch.outer(torch.arange(context, dtype=torch.float32), freqs)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        if t > self.context:
            raise ValueError(f"sequence length {t} exceeds the model's context {self.context}")
        x = self.embed(tokens.long())
        cos, sin = self.cos[:t], self.sin[:t]
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.norm(x))

    @staticmethod
    def batch(data: torch.Tensor, batch_size: int, context: int, generator: torch.Generator | None = None):
        """Random windows of ``data`` (uint8 bytes): inputs and next-byte targets, both (B, T)."""
        start = torch.randint(0, data.numel() - context - 1, (batch_size,), generator=generator)
        idx = start[:, None] + torch.arange(context + 1)
        window = data[idx].long()
        return window[:, :-1], window[:, 1:]


# pLSTM and the vision models built on it live in their own modules; re-exported here.
from .plstm import PLSTM1D, PLSTM2D  # noqa: E402
from .vision import CNNClassifier, PLSTMVision, ViTClassifier  # noqa: E402

__all__ += ["PLSTM1D", "PLSTM2D", "PLSTMVision", "ViTClassifier", "CNNClassifier"]
