from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from gradkit.combine import OrthogonalGradient, SemiGradient, TrueGradient, get_aggregator


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 16), seed=st.integers(0, 2**16), eta=st.floats(0.0, 5.0))
def test_projected_part_is_orthogonal_to_forward_gradient(n, seed, eta):
    g = torch.Generator().manual_seed(seed)
    jac = torch.randn(2, n, generator=g, dtype=torch.float64)
    update = OrthogonalGradient(eta)(jac)
    projected = update - jac[0]
    assert abs(float(projected @ jac[0])) <= 1e-10 * (1 + float(jac.norm()) ** 2)
    # The forward gradient's own component is kept whole: it is never cancelled.
    torch.testing.assert_close(update @ jac[0], jac[0] @ jac[0])


def test_rules_on_a_conflicting_pair():
    forward = torch.tensor([1.0, 0.0])
    backward = torch.tensor([-1.0, 2.0])
    jac = torch.stack([forward, backward])
    torch.testing.assert_close(SemiGradient()(jac), forward)
    torch.testing.assert_close(TrueGradient()(jac), torch.tensor([0.0, 2.0]))
    # backward minus its component along forward: [0, 2]; times eta = 0.5
    torch.testing.assert_close(OrthogonalGradient(0.5)(jac), torch.tensor([1.0, 1.0]))


def test_extra_rows_are_added_unchanged():
    jac = torch.tensor([[1.0, 0.0], [3.0, 1.0], [0.25, -0.5]])
    torch.testing.assert_close(OrthogonalGradient(1.0)(jac), torch.tensor([1.25, 0.5]))
    torch.testing.assert_close(SemiGradient()(jac), torch.tensor([1.25, -0.5]))


def test_zero_forward_gradient_is_guarded():
    jac = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    torch.testing.assert_close(OrthogonalGradient(1.0)(jac), torch.tensor([1.0, 2.0]))


def test_matches_projection_written_as_in_the_official_code():
    # Official code: eta in the backward loss, then forward + (eta g_b) - coef * forward.
    g = torch.Generator().manual_seed(4)
    f, b = torch.randn(2, 30, generator=g, dtype=torch.float64)
    eta = 0.7
    coef = (f @ (eta * b)) / max(float(f @ f), 1e-10)
    want = (1 - coef) * f + eta * b
    torch.testing.assert_close(get_aggregator("orthogonal", eta=eta)(torch.stack([f, b])), want)


def test_bad_arguments():
    with pytest.raises(ValueError, match="eta"):
        OrthogonalGradient(-1.0)
    with pytest.raises(ValueError, match="at least 2"):
        OrthogonalGradient()(torch.ones(1, 3))
    with pytest.raises(ValueError, match="at least 2"):
        SemiGradient()(torch.ones(1, 3))
