"""Real data that every machine has, so nothing is ever downloaded.

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).
* ``stdlib_text``: the Python standard library's own source files as bytes, split by file.

Both are deterministic: the same call gives the same tensors on every machine with the same
Python / scikit-learn version.
"""
from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["Split", "digits", "stdlib_text", "stdlib_files"]

SPLITS = ("train", "val")


@dataclass(frozen=True)
class Split:
    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def digits(split: str = "train", *, image: bool = False, val_fraction: float = 0.2) -> Split:
    """scikit-learn's digits, pixel values scaled to [0, 1].

    ``image=False`` gives inputs of shape (N, 64); ``image=True`` gives (N, 1, 8, 8).
    The split is a fixed permutation (seed 0): the last ``val_fraction`` of it is validation.
    """
    _check_split(split)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("gradkit.datasets.digits needs scikit-learn: pip install 'gradkit[bench]'") from err
    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_val = int(round(len(y) * val_fraction))
    idx = order[: len(y) - n_val] if split == "train" else order[len(y) - n_val :]
    x, y = x[idx], y[idx]
    if image:
        x = x.view(-1, 1, 8, 8)
    return Split(x, y)


def stdlib_files() -> list[Path]:
    """Sorted ``.py`` files of the standard library (site-packages and tests excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__"})
        files.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
    return sorted(files)


def stdlib_text(split: str = "train", *, max_bytes: int | None = None, val_every: int = 10) -> torch.Tensor:
    """The standard library's source as a 1-D uint8 tensor of bytes.

    Files are split, not bytes: every ``val_every``-th file (in sorted order) is validation, so no
    file leaks between the splits. ``max_bytes`` truncates the concatenation.
    """
    _check_split(split)
    if val_every < 2:
        raise ValueError(f"val_every must be >= 2, got {val_every}")
    chunks, total = [], 0
    for i, path in enumerate(stdlib_files()):
        if (i % val_every == val_every - 1) != (split == "val"):
            continue
        data = path.read_bytes()
        chunks.append(data)
        total += len(data)
        if max_bytes is not None and total >= max_bytes:
            break
    blob = b"".join(chunks)
    if max_bytes is not None:
        blob = blob[:max_bytes]
    if not blob:
        raise RuntimeError("no standard-library source files were found")
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8)
