"""Small image classifiers usable at any image size: the pLSTM vision model and its baselines.

``PLSTMVision`` follows the paper's vision model (Pöppel et al. 2025, arXiv:2506.11997; official code
https://github.com/ml-jku/plstm, ``vision_model.py`` with the ``plstm_vision`` configuration of
https://github.com/ml-jku/plstm_experiments): patch embedding, a learned position embedding (resized
bicubically when the grid differs from the one it was made for), pairs of blocks whose pLSTM layer is a
P-mode layer in the first block and a D-mode layer in the second, and a head on the concatenated four
corner tokens (each orientation's information gathers in the corner it runs towards). Each block is
``x + pLSTM(norm(x))`` followed by ``x + W2 gelu(W1 norm(x))`` with a 4x wider hidden layer (the
official "post-up-projection" block). Departure: no drop-path and float32 throughout.

``ViTClassifier`` is the paper's Transformer baseline at small scale (pre-norm blocks, learned position
embedding resized bicubically to other grids, mean pooling); ``CNNClassifier`` a plain convolutional
network on the patch grid with global max pooling.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .plstm import PLSTM2D

__all__ = ["PLSTMVision", "ViTClassifier", "CNNClassifier", "PatchEmbed"]


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` patches to ``dim`` features, plus a learned position embedding
    made for a ``grid`` x ``grid`` layout and resized bicubically to any other (the ViT recipe)."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, grid: int, position: bool = True):
        super().__init__()
        if patch_size < 1 or grid < 1:
            raise ValueError(f"patch_size and grid must be >= 1, got {patch_size}, {grid}")
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.position = nn.Parameter(torch.randn(1, dim, grid, grid) * 0.02) if position else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H / p, W / p, dim)."""
        if images.ndim != 4 or images.shape[-1] % self.patch_size or images.shape[-2] % self.patch_size:
            raise ValueError(f"images must be (batch, channels, H, W) with H and W multiples of patch_size "
                             f"{self.patch_size}; got {tuple(images.shape)}")
        x = self.proj(images)
        if self.position is not None:
            pos = self.position
            if pos.shape[-2:] != x.shape[-2:]:
                pos = F.interpolate(pos, size=x.shape[-2:], mode="bicubic", align_corners=False)
            x = x + pos
        return x.permute(0, 2, 3, 1)


class _MLP(nn.Module):
    def __init__(self, dim: int, ratio: int = 4):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, ratio * dim)
        self.down = nn.Linear(ratio * dim, dim)

    def forward(self, x):
        return x + self.down(F.gelu(self.up(self.norm(x))))


class _PLSTMBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mode: str, form: str):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mixer = PLSTM2D(dim, num_heads, mode=mode, form=form)
        self.mlp = _MLP(dim)

    def forward(self, x):
        return self.mlp(x + self.mixer(self.norm(x)))


class PLSTMVision(nn.Module):
    """pLSTM image classifier: ``depth`` pairs of (P-mode, D-mode) blocks; any image size.

    Args:
        in_channels, num_classes: image channels and classes.
        dim, depth, num_heads: width, number of P/D block pairs, heads per layer.
        patch_size: patch side in pixels; grid: the patch grid the position embedding is made for.
        position: learned position embedding (the paper's default); False drops it.
        form: "parallel" or "recurrent" (passed to every layer).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, *, dim: int = 32, depth: int = 1,
                 num_heads: int = 2, patch_size: int = 4, grid: int = 8, position: bool = True,
                 form: str = "parallel"):
        super().__init__()
        self.embed = PatchEmbed(in_channels, dim, patch_size, grid, position)
        self.blocks = nn.ModuleList(
            _PLSTMBlock(dim, num_heads, mode, form) for _ in range(depth) for mode in ("P", "D"))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(4 * dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(images)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.features(images)
        corners = torch.cat([x[:, 0, 0], x[:, -1, 0], x[:, 0, -1], x[:, -1, -1]], -1)
        return self.head(corners)


class _AttentionBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.heads = num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = _MLP(dim)

    def forward(self, x):  # (B, N, dim)
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        return self.mlp(x + self.proj(y))


class ViTClassifier(nn.Module):
    """Vision Transformer: patch embedding with a learned position embedding (resized to other grids),
    pre-norm attention blocks, mean pooling, linear head."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, *, dim: int = 32, depth: int = 2,
                 num_heads: int = 2, patch_size: int = 4, grid: int = 8):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a multiple of num_heads ({num_heads})")
        self.embed = PatchEmbed(in_channels, dim, patch_size, grid)
        self.blocks = nn.ModuleList(_AttentionBlock(dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(images)
        b, nx, ny, d = x.shape
        x = x.reshape(b, nx * ny, d)
        for block in self.blocks:
            x = block(x)
        return self.norm(x).reshape(b, nx, ny, d)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).mean((1, 2)))


class CNNClassifier(nn.Module):
    """A patchifying convolution (kernel = stride = ``patch_size``), ``depth`` 3x3 conv-ReLU layers on the
    patch grid, global max pooling, linear head."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, *, channels: int = 32, depth: int = 3,
                 patch_size: int = 4):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, patch_size, stride=patch_size), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the patch grid's features (B, H / p, W / p, channels)."""
        return self.body(images).permute(0, 2, 3, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images).amax((2, 3)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
