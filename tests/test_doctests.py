"""The examples in the docstrings of every gradkit module run as written (the same as
``python -m pytest --doctest-modules src``)."""
import doctest
import importlib
import pkgutil

import pytest

import gradkit

def _modules():
    yield "gradkit"
    for info in pkgutil.walk_packages(gradkit.__path__, prefix="gradkit."):
        if info.name != "gradkit.__main__":  # running it would start the command line
            yield info.name


@pytest.mark.parametrize("module", sorted(_modules()))
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_some_examples_exist():
    counts = [doctest.testmod(importlib.import_module(m)).attempted for m in _modules()]
    assert sum(counts) >= 5 and gradkit.__version__
