"""Attribution methods by name, for the command line and for code that picks methods at run time."""
from __future__ import annotations

from typing import Callable

from .expected_gradients import expected_gradients
from .fullgrad import fullgrad
from .igos import igos
from .input_x_gradient import input_x_gradient
from .integrated_gradients import integrated_gradients
from .saliency import saliency
from .smoothgrad import smoothgrad

__all__ = ["METHODS", "get_method"]

METHODS: dict[str, Callable] = {
    "saliency": saliency,
    "inputxgrad": input_x_gradient,
    "ig": integrated_gradients,
    "smoothgrad": smoothgrad,
    "eg": expected_gradients,
    "fullgrad": fullgrad,
    "igos": igos,
}


def get_method(name: str) -> Callable:
    """The attribution function called ``name``; ValueError naming the allowed names otherwise."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown attribution method {name!r}; allowed: {', '.join(METHODS)}") from None
