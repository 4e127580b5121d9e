from __future__ import annotations

import pytest
import torch.nn.functional as F

from inspect_helpers import exact_hessian, small_batch, small_mlp


@pytest.fixture
def mlp_problem():
    model = small_mlp()
    x, y = small_batch()
    h, g = exact_hessian(model, F.cross_entropy, x, y)
    return model, (x, y), h, g
