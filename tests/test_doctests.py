"""The examples in the docstrings of the core, transform, optimizer, low-rank, combine, registry, spec and
memory modules run as written."""
import doctest
import importlib
import pkgutil

import pytest

import gradkit

PACKAGES = ("gradkit.core", "gradkit.transforms", "gradkit.optim", "gradkit.lowrank", "gradkit.combine")
MODULES = ("gradkit.registry", "gradkit.spec", "gradkit.memory")


def _modules():
    for name in PACKAGES:
        package = importlib.import_module(name)
        yield name
        for info in pkgutil.iter_modules(package.__path__):
            yield f"{name}.{info.name}"
    yield from MODULES


@pytest.mark.parametrize("module", sorted(_modules()))
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_some_examples_exist():
    counts = [doctest.testmod(importlib.import_module(m)).attempted for m in _modules()]
    assert sum(counts) >= 5 and gradkit.__version__
