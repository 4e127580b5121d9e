"""GaLore (parity with galore-torch), Fira (scaling factor, norm-growth limiter), SVD-free, subset-norm, SNSM."""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import pytest
import torch
from torch import nn

import gradkit
from gradkit.lowrank import SNSM, Fira, GaLore, SubsetNorm, SVDFree, project_split

from lowrank_helpers import Small, train

# These tests build the low-rank optimizers from unnamed parameters on purpose; the routing warning that
# gives is tested in tests/integrations/test_param_groups.py.
pytestmark = pytest.mark.filterwarnings("ignore::gradkit.grouping.RoutingWarning")


@pytest.fixture
def galore_adamw():
    """galore-torch's AdamW. Its package ``__init__`` also imports the 8-bit and Adafactor variants, which need
    bitsandbytes and transformers; only ``galore_torch.adamw`` is loaded here (its one use of transformers, a
    version check, is stubbed when transformers is absent). The galore_torch and transformers modules this adds
    are removed afterwards, so that no other test sees the stubs."""
    spec = importlib.util.find_spec("galore_torch")
    if spec is None:
        pytest.skip("galore-torch is not installed (pip install galore-torch --no-deps); it is the GaLore parity "
                    "reference")
    before = set(sys.modules)
    try:
        try:
            importlib.import_module("transformers.utils.versions")
        except ImportError:
            versions = types.ModuleType("transformers.utils.versions")
            versions.require_version = lambda *args, **kwargs: None
            for name, module in (("transformers", types.ModuleType("transformers")),
                                 ("transformers.utils", types.ModuleType("transformers.utils")),
                                 ("transformers.utils.versions", versions)):
                sys.modules.setdefault(name, module)
        if "galore_torch" not in sys.modules:  # the package without running its __init__
            package = types.ModuleType("galore_torch")
            package.__path__ = list(spec.submodule_search_locations)
            sys.modules["galore_torch"] = package
        yield importlib.import_module("galore_torch.adamw").AdamW
    finally:
        for name in set(sys.modules) - before:
            if name.split(".")[0] in ("galore_torch", "transformers"):
                del sys.modules[name]


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 24)
        self.b = nn.Linear(24, 10)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def test_galore_matches_galore_torch_for_200_steps(galore_adamw):
    reference_cls = galore_adamw
    torch.manual_seed(0)
    ours, ref = _MLP(), _MLP()
    ref.load_state_dict(ours.state_dict())
    x, y = torch.randn(32, 16), torch.randint(0, 10, (32,))
    matrices = lambda m: [m.a.weight, m.b.weight]  # noqa: E731
    vectors = lambda m: [m.a.bias, m.b.bias]  # noqa: E731
    kw = dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0)
    ref_opt = reference_cls([{"params": vectors(ref)},
                             {"params": matrices(ref), "rank": 4, "update_proj_gap": 50, "scale": 0.25,
                              "proj_type": "std"}], eps=1e-12, **kw)
    our_opt = GaLore([{"params": vectors(ours), "project": False}, {"params": matrices(ours), "project": True}],
                     eps=1e-12, rank=4, update_proj_gap=50, scale=0.25, **kw)
    for _ in range(200):
        for model, opt in ((ref, ref_opt), (ours, our_opt)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        diff = (a - b).abs().max() / b.abs().max()
        assert diff <= 1e-5, float(diff)


def test_galore_keeps_adam_moments_in_the_low_rank_space():
    model = Small()
    opt = GaLore(model.named_parameters(), rank=3)
    train(model, opt, 2)
    st = opt.state[model.up.weight]  # 12 x 8: right projection, moments 12 x 3
    assert st["lowrank.inner.adam.exp_avg"].shape == (12, 3) and st["lowrank.proj.matrix"].shape == (3, 8)
    st = opt.state[model.down.weight]  # 6 x 12: left projection, moments 3 x 12
    assert st["lowrank.inner.adam.exp_avg"].shape == (3, 12) and st["lowrank.proj.matrix"].shape == (6, 3)


@pytest.mark.parametrize("cls", [GaLore, SVDFree])
def test_galore_adds_its_back_projection_inside_the_multiply(cls):
    # no param-sized update is formed: the step's only GEMM with a 64 x 48 result accumulates into the param
    w = nn.Parameter(torch.randn(64, 48))
    opt = cls([w], lr=0.1, rank=4, update_proj_gap=100, full_state=lambda n, p: False)
    w.grad = torch.randn(64, 48)
    opt.step()  # the subspace is fitted on the first step
    with torch.profiler.profile(record_shapes=True) as prof:
        opt.step()
    calls = [(e.name, [list(x) for x in e.input_shapes]) for e in prof.events()]
    formed = [shapes for name, shapes in calls if name == "aten::mm" and [shapes[0][0], shapes[1][1]] == [64, 48]]
    added = [shapes for name, shapes in calls if name == "aten::add_" and shapes[:2] == [[64, 48], [64, 48]]]
    into = [shapes for name, shapes in calls if name == "aten::addmm_" and shapes[0] == [64, 48]]
    assert not formed and not added and len(into) == 1, calls


def test_galores_scale_reaches_the_projected_matrices_only():
    # a 10 x 3 matrix (rank >= 3: plain Adam, unscaled) beside a projected 10 x 6 one in the same group
    g = torch.Generator().manual_seed(0)
    small, big = nn.Parameter(torch.randn(10, 3, generator=g)), nn.Parameter(torch.randn(10, 6, generator=g))
    twin = nn.Parameter(small.detach().clone())
    opt = GaLore([small, big], lr=0.1, rank=4, scale=0.25, full_state=lambda n, p: False)
    adam = torch.optim.Adam([twin], lr=0.1)
    alone = GaLore([nn.Parameter(big.detach().clone())], lr=0.1, rank=4, scale=0.25, full_state=lambda n, p: False)
    for _ in range(3):
        small.grad, big.grad = torch.randn(10, 3, generator=g), torch.randn(10, 6, generator=g)
        twin.grad, alone.param_groups[0]["params"][0].grad = small.grad.clone(), big.grad.clone()
        for o in (opt, adam, alone):
            o.step()
    torch.testing.assert_close(small, twin, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(big, alone.param_groups[0]["params"][0], rtol=0, atol=0)


def test_a_galore_step_into_a_non_contiguous_matrix_equals_the_contiguous_one():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(24, 16, generator=g) for _ in range(3)]
    start = torch.randn(24, 16, generator=g)
    a = nn.Parameter(start.clone())
    b = nn.Parameter(start.T.contiguous().T)  # the same values, column-major
    assert not b.is_contiguous()
    opts = [GaLore([p], lr=0.1, rank=3, update_proj_gap=2, weight_decay=0.1, full_state=lambda n, p: False)
            for p in (a, b)]
    for grad in grads:
        for p, opt in zip((a, b), opts):
            p.grad = grad.clone()
            opt.step()
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert not torch.equal(a.detach(), start)


def _fira_one_matrix(gamma, grads):
    """Fira on one 10 x 6 matrix; ``grads`` is a list of tensors or of callables q -> gradient."""
    w = nn.Parameter(torch.zeros(10, 6))
    opt = Fira([w], lr=1.0, rank=2, update_proj_gap=1000, scale=1.0, limiter=gamma, full_state=lambda n, p: False)
    norms, updates = [], []
    for g in grads:
        if callable(g):
            g = g(opt.state[w]["lowrank.proj.matrix"])
        w.grad = g.clone()
        before = w.detach().clone()
        opt.step()
        norms.append(opt.state[w]["lowrank.residual_norm"].item())
        updates.append(before - w.detach())
    return opt, w, norms, updates


@pytest.mark.parametrize("shape", [(12, 5), (5, 12)])
def test_fira_stacked_factors_equal_the_per_matrix_ones(monkeypatch, shape):
    # off the CPU same-shape matrices share one stacked norm; on the CPU each matrix takes its own
    import gradkit.lowrank.split as split
    from gradkit.lowrank.projectors import same_shape_batches

    def run():
        g = torch.Generator().manual_seed(0)
        ws = [nn.Parameter(torch.randn(shape, generator=g)) for _ in range(3)]
        opt = Fira(ws, lr=0.1, rank=2, update_proj_gap=2, full_state=lambda n, p: False)
        for _ in range(3):
            for w in ws:
                w.grad = torch.randn(shape, generator=g)
            opt.step()
        return [w.detach().clone() for w in ws]

    alone = run()
    monkeypatch.setattr(split, "stacking_batches", same_shape_batches)
    for a, b in zip(alone, run()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_fira_limiter_bounds_the_residual_norm_growth():
    torch.manual_seed(0)
    g0, noise = torch.randn(10, 6), torch.randn(10, 6)

    def spike(scale):  # same subspace part, a complement that grows by ``scale``
        return lambda q: g0 @ q.T @ q + scale * (noise - noise @ q.T @ q)

    grads = [g0] + [spike(1.0 if t < 3 else 10.0**t) for t in range(1, 8)]
    _, _, norms, updates = _fira_one_matrix(1.01, grads)
    for prev, cur in zip(norms, norms[1:]):
        assert cur <= 1.01 * prev * (1 + 1e-5)
    # the same run without an effective limiter: the residual (and the update) grows by orders of magnitude
    _, _, unlimited, big = _fira_one_matrix(1e12, grads)
    assert unlimited[-1] > 1e3 * norms[-1]
    assert big[-1].norm() > 1e3 * updates[-1].norm()


def test_fira_first_update_is_galore_plus_scaled_residual():
    torch.manual_seed(0)
    g = torch.randn(10, 6)
    opt, w, _, updates = _fira_one_matrix(1.01, [g])
    q = opt.state[w]["lowrank.proj.matrix"]  # right projection (10 >= 6): R = G Q^T, 10 x 2
    r = g @ q.T
    psi = r / (r.abs() + 1e-8)  # Adam's first step
    phi = psi.norm(dim=1, keepdim=True) / (r.norm(dim=1, keepdim=True) + 1e-8)
    expected = psi @ q + phi * (g - r @ q)
    torch.testing.assert_close(updates[0], expected, rtol=1e-5, atol=1e-6)


def test_svdfree_stores_only_column_indices():
    model = Small()
    opt = SVDFree(model.named_parameters(), rank=3)
    train(model, opt, 2)
    st = opt.state[model.up.weight]
    assert st["lowrank.proj.indices"].dtype == torch.int64 and st["lowrank.proj.indices"].shape == (3,)
    assert opt.state_bytes(by="kind")["index"] == 8 * 3 * 3  # three projected matrices
    assert "projection" not in opt.state_bytes(by="kind")


def test_subset_norm_shares_the_second_moment_over_the_shorter_dimension():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(12, 5))
    opt = SubsetNorm([w], lr=0.1, betas=(0.0, 0.5), eps=1e-8)
    w.grad = torch.randn(12, 5)
    before = w.detach().clone()
    opt.step()
    v = opt.state[w]["subset_norm.subset_sq"]
    assert v.shape == (12, 1)  # one entry per row: each subset is a 5-long row
    expected_v = 0.5 * w.grad.square().sum(dim=1, keepdim=True)
    torch.testing.assert_close(v, expected_v)
    torch.testing.assert_close(before - w.detach(), 0.1 * w.grad / (expected_v / 0.5).sqrt(), rtol=1e-5, atol=1e-7)
    wide = nn.Parameter(torch.randn(4, 9))
    opt = SubsetNorm([wide])
    wide.grad = torch.randn(4, 9)
    opt.step()
    assert opt.state[wide]["subset_norm.subset_sq"].shape == (1, 9)


def test_snsm_momentum_lives_in_the_subspace_and_sgd_in_the_complement():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(12, 8))
    b1, b2, eps = 0.9, 0.999, 1e-8
    opt = SNSM([w], lr=1.0, betas=(b1, b2), eps=eps, rank=2, full_state=lambda n, p: False)
    g1, g2 = torch.randn(12, 8), torch.randn(12, 8)
    steps = []
    for g in (g1, g2):
        w.grad = g.clone()
        before = w.detach().clone()
        opt.step()
        steps.append(before - w.detach())
    st = opt.state[w]
    q = st["snsm.sm.proj.matrix"]  # right projection (12 >= 8): coordinates G Q^T, 12 x 2
    assert st["snsm.sm.inner.ema.exp_avg"].shape == (12, 2) and st["snsm.subset_sq"].shape == (12, 1)
    v1 = (1 - b2) * g1.square().sum(dim=1, keepdim=True)
    # first step: the bias-corrected momentum is the projected gradient, so the direction is the gradient
    torch.testing.assert_close(steps[0], g1 / ((v1 / (1 - b2)).sqrt() + eps), rtol=1e-5, atol=1e-6)
    low1, low2 = g1 @ q.T, g2 @ q.T
    m_hat = (b1 * (1 - b1) * low1 + (1 - b1) * low2) / (1 - b1**2)
    direction = m_hat @ q + (g2 - low2 @ q)
    v2 = b2 * v1 + (1 - b2) * g2.square().sum(dim=1, keepdim=True)
    torch.testing.assert_close(steps[1], direction / ((v2 / (1 - b2**2)).sqrt() + eps), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [GaLore, Fira, SVDFree, SNSM])
def test_rank_must_be_a_non_negative_int(cls):
    with pytest.raises(ValueError, match="rank"):
        cls(Small().parameters(), rank=-1)


def test_complement_and_policy_are_checked():
    with pytest.raises(ValueError, match="complement"):
        project_split(gradkit.scale_by_adam(), "svd", complement="adam")
    with pytest.raises(TypeError, match="inner"):
        project_split("adam", "svd")


def test_snsm_checks_betas_by_name():
    with pytest.raises(ValueError, match="betas"):
        SNSM(Small().parameters(), betas=0.9)
