"""Attribution methods by name, for the command line and for code that picks methods at run time.

Each method registers itself in its own module with ``@register_attribution(name, ...)``;
``METHODS`` is that registry (``gradkit.registry.ATTRIBUTIONS``), a read-only mapping from name to function.
"""
from __future__ import annotations

from typing import Callable

from gradkit.registry import ATTRIBUTIONS

__all__ = ["METHODS", "get_method"]

METHODS = ATTRIBUTIONS


def get_method(name: str) -> Callable:
    """The attribution function called ``name``; an unknown name lists the allowed ones and the nearest.

    >>> get_method("ig").__name__
    'integrated_gradients'
    """
    return ATTRIBUTIONS.get(name)
