"""Measurements that work for any optimizer: state memory, process memory, step timing."""
from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

import torch

from gradkit.core.accounting import tensor_bytes as _tensor_bytes

__all__ = ["state_bytes", "tensor_bytes", "current_rss_bytes", "peak_rss_bytes", "StepTimer", "device_name"]


def device_name(device: torch.device | str = "cpu") -> str:
    """What a figure was measured on: the CUDA device's name, or the CPU's model name."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor reachable from ``obj`` through dicts, lists, tuples and sets, each tensor
    counted once however often it is referenced (a wrapper subclass such as torchao's quantized states by
    the tensors it wraps: :func:`gradkit.core.accounting.tensor_bytes`)."""
    return _tensor_bytes(obj, set())


def state_bytes(optimizer: Any) -> int:
    """Bytes the optimizer keeps between steps.

    Uses the optimizer's own ``state_bytes()`` when it has one (gradkit optimizers count their
    namespaced state exactly); otherwise sums tensor sizes in ``optimizer.state``, recursing into
    nested containers, which covers torch.optim and third-party optimizers.
    """
    own = getattr(optimizer, "state_bytes", None)
    if callable(own):
        return int(own())
    state = getattr(optimizer, "state", None)
    if state is None:
        raise TypeError(f"cannot measure the state of {type(optimizer).__name__}: it has neither state_bytes() nor .state")
    return tensor_bytes(dict(state))


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int | None:
    """Resident memory of this process now (Linux), or None where /proc is unavailable."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int | None:
    """Peak resident memory of this process so far (whole-process high-water mark)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class StepTimer:
    """Times one call, synchronising the device first so queued kernels are not charged to it."""

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self.times: list[float] = []

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)
        return False
