"""The frontier optimizers' parity runs: the smooth CNN, its 50-step parity run and the written-out
reference updates live in benchmarks/frontier_references.py, which the parity table
(benchmarks/frontier_parity.py) uses too; this module puts benchmarks/ on the import path and re-exports them.
"""
from __future__ import annotations

import os
import sys

_BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")
if os.path.abspath(_BENCHMARKS) not in map(os.path.abspath, sys.path):
    sys.path.insert(0, os.path.abspath(_BENCHMARKS))

from frontier_references import (  # noqa: E402,F401
    OfficialLaProp, OfficialMARS, PaperCautiousAdamW, cnn_parity, max_relative_difference, seeded_run, smooth_cnn,
)
