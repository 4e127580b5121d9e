"""Every numeric argument of every registered optimizer takes numbers only, as torch.optim does."""
import inspect

import pytest
import torch

from gradkit.registry import get_optimizer

from .helpers import tiny_mlp
from .reliability import NAMES

# These tests build the low-rank optimizers from unnamed parameters on purpose; the routing warning that
# gives is tested in tests/integrations/test_param_groups.py.
pytestmark = pytest.mark.filterwarnings("ignore::gradkit.grouping.RoutingWarning")


def _numeric_arguments():
    for name in NAMES:
        for arg, p in inspect.signature(get_optimizer(name).__init__).parameters.items():
            d = p.default
            if isinstance(d, (int, float)) and not isinstance(d, bool):
                yield name, arg, d
            elif isinstance(d, tuple) and d and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in d):
                yield name, arg, d


CASES = list(_numeric_arguments())


def test_the_registry_has_numeric_arguments_to_check():
    assert len({n for n, _, _ in CASES}) == len(NAMES) and len(CASES) > 4 * len(NAMES)


@pytest.mark.parametrize("name, arg, default", CASES, ids=[f"{n}-{a}" for n, a, _ in CASES])
def test_text_and_bools_are_refused_by_name(name, arg, default):
    if isinstance(default, tuple):
        bad = [tuple(str(x) for x in default), (True,) + default[1:]]
    else:
        bad = [str(default), True, False if default else True]
    for value in bad:
        with pytest.raises(TypeError, match=arg):
            get_optimizer(name)(tiny_mlp().parameters(), **{arg: value})


@pytest.mark.parametrize("name, arg, default", [c for c in CASES if not isinstance(c[2], tuple)],
                         ids=[f"{n}-{a}" for n, a, d in CASES if not isinstance(d, tuple)])
def test_nan_is_refused_by_name(name, arg, default):
    with pytest.raises((TypeError, ValueError), match=arg):
        get_optimizer(name)(tiny_mlp().parameters(), **{arg: float("nan")})


@pytest.mark.parametrize("name", NAMES)
def test_a_one_element_tensor_learning_rate_is_taken(name):
    model = tiny_mlp()
    opt = get_optimizer(name)(model.parameters(), lr=torch.tensor(1e-3))
    model(torch.randn(2, 8)).sum().backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
