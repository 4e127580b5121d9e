"""The core tests' helpers live in tests/support.py, shared by every test directory; re-exported here for
``from .helpers import ...``."""
from support import data, max_relative_difference, tiny_mlp, train  # noqa: F401

max_rel_error = max_relative_difference
