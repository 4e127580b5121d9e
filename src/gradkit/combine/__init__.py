"""Combining several gradients into one update: gradient surgery, Jacobian descent and friends.

Several losses (or several already computed gradients) over the same parameters are turned into
one gradient written into ``.grad``, so any optimizer steps on it::

    from gradkit import combine

    agg = combine.get_aggregator("upgrad")
    opt.zero_grad()
    info = combine.backward([loss_task1, loss_task2], model.parameters(), agg)
    opt.step()
    info.conflict_fraction, info.cosine  # how much the objectives disagreed this step

An aggregator is an object with one method, ``aggregate(jacobian, context) -> update``, over the
``(num_objectives, num_param_entries)`` Jacobian. Each lives in its own module of this package;
a new module that applies ``@register_aggregator(name)`` is picked up by ``get_aggregator``.
"""
from __future__ import annotations

import importlib
import pkgutil

from ._api import backward, backward_from_gradients
from ._base import AGGREGATORS, Aggregator, Context, get_aggregator, register_aggregator
from ._diagnostics import Diagnostics, diagnose
from ._jacobian import jacobian

# Every public module of this package defines aggregators; importing it registers them.
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

from .baseline import Mean, Sum  # noqa: E402
from .bloop import Bloop  # noqa: E402
from .gradnorm import GradNorm  # noqa: E402
from .odice import OrthogonalGradient, SemiGradient, TrueGradient  # noqa: E402
from .pcgrad import PCGrad  # noqa: E402
from .upgrad import UPGrad  # noqa: E402

__all__ = [
    "backward",
    "backward_from_gradients",
    "jacobian",
    "Aggregator",
    "Context",
    "AGGREGATORS",
    "get_aggregator",
    "register_aggregator",
    "Diagnostics",
    "diagnose",
    "Sum",
    "Mean",
    "PCGrad",
    "UPGrad",
    "GradNorm",
    "Bloop",
    "OrthogonalGradient",
    "SemiGradient",
    "TrueGradient",
]
