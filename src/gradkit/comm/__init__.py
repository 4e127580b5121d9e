"""Gradient communication for data-parallel training: compression hooks for ``DistributedDataParallel``.

* ``LGreCo``, ``lgreco_hook``, ``lgreco_select``: per-layer PowerSGD ranks chosen by L-GreCo's dynamic
  programme under an error budget (``lgreco.py``; arXiv:2210.17357).
"""
from .lgreco import LGreCo, lgreco_hook, lgreco_select

__all__ = ["LGreCo", "lgreco_hook", "lgreco_select"]
