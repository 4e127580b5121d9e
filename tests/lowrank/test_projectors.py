"""Projectors: orthonormal bases, reconstruction, DCT column selection, deterministic randomness."""
from __future__ import annotations

import pytest
import torch

from gradkit.lowrank import (DCTProjector, RandKProjector, RandomProjector, SeededRandomProjector, SVDProjector,
                             dct_basis, get_projector)

MATRIX = [SVDProjector, RandomProjector, SeededRandomProjector, DCTProjector]
SHAPES = [(12, 7), (5, 9), (6, 3, 2)]  # tall (right projection), wide (left), 3-D viewed as 6 x 6


def _fitted(cls, shape, rank, seed=0):
    torch.manual_seed(seed)
    g = torch.randn(shape, dtype=torch.float64)
    proj = cls()
    st = proj.state(g, rank)
    proj.fit(g, st, torch.Generator().manual_seed(seed))
    return proj, st, g


def _basis(proj, st, shape):
    """The columns spanning the subspace, as an (n or m) x r matrix."""
    if isinstance(proj, DCTProjector):
        return proj._columns(st, shape, torch.float64)
    q = proj.basis(st)
    return q.T if q.shape[0] < q.shape[1] else q


@pytest.mark.parametrize("cls", MATRIX)
@pytest.mark.parametrize("shape", SHAPES)
def test_matrix_projectors_are_semi_orthogonal(cls, shape):
    proj, st, _ = _fitted(cls, shape, 3)
    b = _basis(proj, st, shape)
    assert b.shape[1] == 3
    torch.testing.assert_close(b.T @ b, torch.eye(3, dtype=b.dtype), atol=1e-10, rtol=0)


@pytest.mark.parametrize("cls", MATRIX)
@pytest.mark.parametrize("shape", SHAPES)
def test_back_of_project_is_the_orthogonal_projection(cls, shape):
    proj, st, g = _fitted(cls, shape, 3)
    low = proj.project(g, st)
    assert tuple(low.shape) == proj.low_shape(g.shape, 3)
    once = proj.back(low, st, g.shape)
    twice = proj.back(proj.project(once, st), st, g.shape)
    torch.testing.assert_close(twice, once, atol=1e-10, rtol=0)  # idempotent
    residual = g - once
    torch.testing.assert_close(proj.project(residual, st), torch.zeros_like(low), atol=1e-10, rtol=0)  # orthogonal


@pytest.mark.parametrize("shape", SHAPES)
def test_svd_projection_is_the_best_rank_r_reconstruction(shape):
    proj, st, g = _fitted(SVDProjector, shape, 2)
    mat = g.reshape(g.shape[0], -1)
    s = torch.linalg.svdvals(mat)
    err = (mat - proj.back(proj.project(g, st), st, g.shape).reshape(mat.shape)).norm() ** 2
    torch.testing.assert_close(err, (s[2:] ** 2).sum(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cls", MATRIX)
def test_full_rank_basis_reconstructs_exactly(cls):
    proj, st, g = _fitted(cls, (8, 5), 5)
    torch.testing.assert_close(proj.back(proj.project(g, st), st, g.shape), g, atol=1e-10, rtol=0)


def test_dct_basis_is_orthonormal_and_cached():
    d = dct_basis(16, torch.float64)
    torch.testing.assert_close(d.T @ d, torch.eye(16, dtype=torch.float64), atol=1e-12, rtol=0)
    assert dct_basis(16, torch.float64) is d  # built once per size


@pytest.mark.parametrize("shape", [(20, 8), (8, 20)])
def test_dct_selects_the_columns_most_aligned_with_the_gradient(shape):
    m, n = shape
    right = m >= n
    d = dct_basis(n if right else m, torch.float64)
    torch.manual_seed(0)
    wanted = torch.tensor([6, 1, 4])
    weights = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    # a gradient whose energy lies along three DCT columns, with a little noise elsewhere
    coeff = torch.randn(m if right else n, 3, dtype=torch.float64) * weights
    g = coeff @ d[:, wanted].T if right else d[:, wanted] @ coeff.T
    g = g + 1e-3 * torch.randn(shape, dtype=torch.float64)
    proj = DCTProjector()
    st = proj.state(g, 3)
    proj.fit(g, st, None)
    assert st["indices"].dtype == torch.int64 and st["indices"].numel() == 3
    assert set(st["indices"].tolist()) == set(wanted.tolist())
    scores = (g @ d).norm(dim=0) if right else (d.T @ g).norm(dim=1)
    assert scores[st["indices"]].min() >= scores.max() * 0 + scores.sort(descending=True).values[2]


def test_randk_keeps_exactly_the_selected_coordinates():
    g = torch.randn(7, 4, dtype=torch.float64)
    proj = RandKProjector()
    st = proj.state(g, 10)
    proj.fit(g, st, torch.Generator().manual_seed(3))
    idx = st["indices"]
    assert idx.unique().numel() == 10 and torch.equal(idx, idx.sort().values)
    back = proj.back(proj.project(g, st), st, g.shape).reshape(-1)
    mask = torch.zeros(28, dtype=torch.bool)
    mask[idx] = True
    assert torch.equal(back[mask], g.reshape(-1)[mask]) and torch.all(back[~mask] == 0)


@pytest.mark.parametrize("cls", [RandomProjector, SeededRandomProjector, RandKProjector])
def test_random_projectors_are_determined_by_the_seed(cls):
    g = torch.randn(9, 6)
    a, b, c = cls(), cls(), cls()
    sa, sb, sc = a.state(g, 3), b.state(g, 3), c.state(g, 3)
    a.fit(g, sa, torch.Generator().manual_seed(5))
    b.fit(g, sb, torch.Generator().manual_seed(5))
    c.fit(g, sc, torch.Generator().manual_seed(6))
    key = next(iter(sa))
    assert torch.equal(sa[key], sb[key]) and not torch.equal(sa[key], sc[key])


def test_get_projector_rejects_unknown_names():
    with pytest.raises(ValueError, match="projector must be one of"):
        get_projector("qr")


@pytest.mark.parametrize("cls", MATRIX + [RandKProjector])
def test_batched_forms_equal_the_per_tensor_ones(cls):
    torch.manual_seed(0)
    grads = [torch.randn(9, 4), torch.randn(9, 4), torch.randn(4, 9), torch.randn(9, 4), torch.randn(3, 2, 2)]
    proj = cls()
    states = []
    for j, g in enumerate(grads):
        st = proj.state(g, 2)
        proj.fit(g, st, torch.Generator().manual_seed(j))
        states.append(st)
    lows = proj.project_many(grads, states)
    backs = proj.back_many(lows, states, [g.shape for g in grads])
    for g, st, low, back in zip(grads, states, lows, backs):
        torch.testing.assert_close(low, proj.project(g, st), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(back, proj.back(proj.project(g, st), st, g.shape), rtol=1e-6, atol=1e-6)


def _fitted_many(proj, grads, rank, batched):
    states = [proj.state(g, rank) for g in grads]
    gens = [torch.Generator().manual_seed(j) for j in range(len(grads))]
    if batched:
        proj.fit_many(grads, states, gens)
    else:
        for g, st, gen in zip(grads, states, gens):
            proj.fit(g, st, gen)
    return states


def _check_multi_tensor_forms(cls, device):
    torch.manual_seed(0)
    shapes = [(9, 4), (9, 4), (4, 9), (4, 9), (9, 4), (3, 2, 2)]
    grads = [torch.randn(s, dtype=torch.float64, device=device) for s in shapes]
    proj = cls()
    batched = _fitted_many(proj, grads, 2, batched=True)
    single = _fitted_many(proj, grads, 2, batched=False)
    for g, a, b in zip(grads, batched, single):  # the same subspace (compared as projections: signs may differ)
        torch.testing.assert_close(proj.back(proj.project(g, a), a, g.shape),
                                   proj.back(proj.project(g, b), b, g.shape), rtol=1e-9, atol=1e-9)
    lows = proj.project_many(grads, batched)
    adds = [torch.randn_like(g) for g in grads]
    backs = proj.back_many(lows, batched, [g.shape for g in grads], scale=0.25, add=adds)
    rests = proj.complement_many(grads, lows, batched)
    for g, st, low, add, back, rest in zip(grads, batched, lows, adds, backs, rests):
        torch.testing.assert_close(back, add + 0.25 * proj.back(low, st, g.shape), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(rest, g - proj.back(proj.project(g, st), st, g.shape), rtol=1e-12, atol=1e-12)
        assert rest.shape == back.shape == g.shape


@pytest.mark.parametrize("cls", MATRIX + [RandKProjector])
def test_multi_tensor_fit_scale_add_and_complement_equal_the_per_tensor_forms(cls):
    _check_multi_tensor_forms(cls, "cpu")


@pytest.mark.parametrize("sign_free", [False, True])
@pytest.mark.parametrize("cls", MATRIX)
def test_a_stacked_fit_equals_one_fit_per_matrix(cls, sign_free):
    # the CPU fits matrix by matrix (fit_many); the stacked route, taken on accelerators, is checked here on the CPU
    torch.manual_seed(0)
    grads = [torch.randn(9, 4, dtype=torch.float64) for _ in range(3)] + [torch.randn(4, 9, dtype=torch.float64)]
    proj = cls()
    for batch in (grads[:3], grads[3:]):
        stacked = [proj.state(g, 2) for g in batch]
        proj._fit_batch(batch, stacked, [torch.Generator().manual_seed(j) for j in range(len(batch))],
                        sign_free=sign_free)
        for j, (g, st) in enumerate(zip(batch, stacked)):
            alone = proj.state(g, 2)
            proj._fit_batch([g], [alone], [torch.Generator().manual_seed(j)], sign_free=sign_free)
            assert st.keys() == alone.keys() and all(torch.equal(st[k], alone[k]) for k in st)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: same-shape matrices are stacked only there")
@pytest.mark.parametrize("cls", MATRIX)
def test_stacked_bmm_path_equals_the_per_tensor_forms(cls):
    _check_multi_tensor_forms(cls, "cuda")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sign_free_svd_fit_is_the_same_subspace_up_to_signs(dtype):
    # the Gram eigendecomposition route: the same singular vectors, largest first, each up to its sign
    torch.manual_seed(0)
    grads = [torch.randn(s, dtype=dtype) for s in [(12, 7), (12, 7), (5, 9), (6, 3, 2)]]
    proj = SVDProjector()
    tol = dict(rtol=0, atol=1e-9 if dtype == torch.float64 else 1e-4)
    exact = [proj.state(g, 3) for g in grads]
    fast = [proj.state(g, 3) for g in grads]
    proj.fit_many(grads, exact, [None] * len(grads))
    proj.fit_many(grads, fast, [None] * len(grads), sign_free=True)
    for g, a, b in zip(grads, exact, fast):
        qa, qb = _basis(proj, a, g.shape), _basis(proj, b, g.shape)
        signs = (qa * qb).sum(0).sign()
        assert signs.abs().min() == 1  # every vector matched, column by column (same order)
        torch.testing.assert_close(qb * signs, qa, **tol)


def test_back_many_into_add_writes_into_the_addends():
    torch.manual_seed(0)
    grads = [torch.randn(9, 4, dtype=torch.float64), torch.randn(4, 9, dtype=torch.float64)]
    proj = SVDProjector()
    states = [proj.state(g, 2) for g in grads]
    proj.fit_many(grads, states, [None, None])
    lows = proj.project_many(grads, states)
    adds = [torch.randn_like(g) for g in grads]
    expected = [a + 0.25 * proj.back(low, st, a.shape) for a, low, st in zip(adds, lows, states)]
    out = proj.back_many(lows, states, [g.shape for g in grads], scale=0.25, add=adds, into_add=True)
    for o, a, e in zip(out, adds, expected):
        assert o.data_ptr() == a.data_ptr()  # the same memory: no new full-size tensor
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(9, 6), (5, 12), (4, 3, 2)])
def test_seeded_random_basis_is_the_stored_random_basis(shape, dtype):
    # the same seed gives bit for bit the matrix "random" stores; only the seed triple is kept
    g = torch.randn(shape, dtype=dtype)
    stored, seeded = RandomProjector(), SeededRandomProjector()
    a, b = stored.state(g, 2), seeded.state(g, 2)
    stored.fit(g, a, torch.Generator().manual_seed(11))
    seeded.fit(g, b, torch.Generator().manual_seed(11))
    assert list(b) == ["basis_seed"] and b["basis_seed"].dtype == torch.int64 and b["basis_seed"].numel() == 3
    q = seeded.basis(b)
    assert q.dtype == a["matrix"].dtype and torch.equal(q, a["matrix"])
    # several at once (one QR per shape) give each one's own basis
    many = seeded.materialize([b, seeded.state(g, 2), b])
    assert torch.equal(many[0]["matrix"], q) and torch.equal(many[2]["matrix"], q)
    assert not torch.equal(many[1]["matrix"], q)  # seed 0, never fitted: another basis
