import os

import pytest
import torch

# Small tensors: threads only add overhead and run-to-run variation.
torch.set_num_threads(int(os.environ.get("GRADKIT_TEST_THREADS", "1")))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
