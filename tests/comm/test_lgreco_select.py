"""L-GreCo's dynamic programme against brute force, and its refusals."""
import itertools

import pytest
import torch

from gradkit.comm import LGreCo, lgreco_select


def _brute(errors, sizes, budget):
    best = None
    for combo in itertools.product(range(len(errors[0])), repeat=len(errors)):
        e = sum(errors[i][k] for i, k in enumerate(combo))
        s = sum(sizes[i][k] for i, k in enumerate(combo))
        if e <= budget and (best is None or s < best):
            best = s
    return best


@pytest.mark.parametrize("seed", range(5))
def test_choice_meets_the_budget_and_is_optimal_up_to_the_rounding(seed):
    g = torch.Generator().manual_seed(seed)
    layers, levels, bins = 5, 4, 200
    ranks = torch.tensor([1, 2, 4, 8])
    scale = torch.rand(layers, 1, generator=g) * 10
    errors = (scale / ranks * (1 + 0.3 * torch.rand(layers, levels, generator=g))).tolist()
    sizes = (ranks * torch.randint(20, 200, (layers, 1), generator=g)).tolist()
    budget = sum(row[2] for row in errors)  # uniform rank 4
    chosen = lgreco_select(errors, sizes, budget, bins=bins)
    total_error = sum(errors[i][k] for i, k in enumerate(chosen))
    size = sum(sizes[i][k] for i, k in enumerate(chosen))
    assert total_error <= budget
    assert size >= _brute(errors, sizes, budget)                          # nothing beats the true optimum
    assert size <= _brute(errors, sizes, budget * (1 - layers / bins))   # and rounding costs at most L units
    uniform = lgreco_select(errors, sizes, budget, bins=bins, baseline=[2] * layers)
    assert sum(sizes[i][k] for i, k in enumerate(uniform)) <= min(size, sum(row[2] for row in sizes))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="L x K"):
        lgreco_select([[1.0, 2.0]], [[1, 2, 3]], 1.0)
    with pytest.raises(ValueError, match="budget must be"):
        lgreco_select([[1.0]], [[1]], -1.0)
    with pytest.raises(ValueError, match="no choice of levels meets"):
        lgreco_select([[5.0, 3.0]], [[1, 2]], 1.0)
    with pytest.raises(ValueError, match="default_rank must be one of"):
        LGreCo(torch.nn.Linear(2, 2), ranks=(1, 2), default_rank=4)
    with pytest.raises(ValueError, match="update_every must be"):
        LGreCo(torch.nn.Linear(2, 2), update_every=0)
