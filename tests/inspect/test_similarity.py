"""SVCCA and linear CKA: 1 for identical representations and invariant to the transformations their
papers state (rotation and isotropic scaling; every invertible linear map for SVCCA)."""
import pytest
import torch

from gradkit.inspect.similarity import flatten_positions, linear_cka, svcca


@pytest.fixture
def reps():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 12, generator=gen, dtype=torch.float64) @ torch.randn(12, 12, generator=gen, dtype=torch.float64)
    y = torch.tanh(x[:, :8] @ torch.randn(8, 10, generator=gen, dtype=torch.float64)) + 0.5 * torch.randn(200, 10, generator=gen, dtype=torch.float64)
    rotation = torch.linalg.qr(torch.randn(10, 10, generator=gen, dtype=torch.float64))[0]
    invertible = torch.randn(10, 10, generator=gen, dtype=torch.float64) + 3 * torch.eye(10, dtype=torch.float64)
    return x, y, rotation, invertible


def test_identical_representations_give_one(reps):
    x, y, _, _ = reps
    assert svcca(x, x) == pytest.approx(1.0) and linear_cka(x, x) == pytest.approx(1.0)
    assert svcca(y, y, keep_variance=1.0) == pytest.approx(1.0)


def test_rotation_and_isotropic_scaling_leave_both_unchanged(reps):
    x, y, rotation, _ = reps
    moved = 4.0 * y @ rotation + 2.0  # a shift too: both centre the neurons
    assert linear_cka(x, moved) == pytest.approx(linear_cka(x, y), rel=1e-10)
    assert svcca(x, moved) == pytest.approx(svcca(x, y), rel=1e-10)
    assert 0.1 < linear_cka(x, y) < 0.99 and 0.1 < svcca(x, y) < 0.99  # not trivially 0 or 1


def test_svcca_is_invariant_to_invertible_linear_maps_and_cka_is_not(reps):
    x, y, _, invertible = reps
    assert svcca(x, y @ invertible, keep_variance=1.0) == pytest.approx(svcca(x, y, keep_variance=1.0), rel=1e-8)
    assert abs(linear_cka(x, y @ invertible) - linear_cka(x, y)) > 1e-3


def test_flatten_positions_and_bad_input():
    a = torch.arange(2 * 3 * 4 * 5.0).view(2, 3, 4, 5)
    flat = flatten_positions(a)
    assert flat.shape == (40, 3) and torch.equal(flat[1], a[0, :, 0, 1])
    with pytest.raises(ValueError, match="same n"):
        svcca(torch.randn(5, 2), torch.randn(6, 2))
    with pytest.raises(ValueError, match="keep_variance"):
        svcca(torch.randn(5, 2), torch.randn(5, 2), keep_variance=0.0)
    with pytest.raises(ValueError, match="constant"):
        linear_cka(torch.ones(5, 2), torch.randn(5, 2))
