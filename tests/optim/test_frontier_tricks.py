"""Cautious, ADOPT, LaProp and MARS against their reference implementations (50 steps of a small CNN)."""
from __future__ import annotations

import pytest
import torch

from gradkit.optim import ADOPT, MARS, CautiousAdamW, CautiousLion, LaProp
from gradkit.transforms import cautious_mask

from _frontier_support import OfficialLaProp, OfficialMARS, PaperCautiousAdamW, cnn_parity
from support import check_rejects, check_staggered_steps, check_state_bytes

TOL = 1e-5


def _po():
    return pytest.importorskip("pytorch_optimizer", reason="parity needs pytorch-optimizer: pip install pytorch-optimizer")


# -- Cautious -------------------------------------------------------------------------------------
def test_cautious_adamw_matches_the_papers_algorithm():
    # eps ~ 0 makes the official eps placement (sqrt(v) + eps, before the bias corrections) irrelevant;
    # with weight decay the official order (decay after the step) differs by O(lr^2 wd).
    assert cnn_parity(lambda p: CautiousAdamW(p, lr=1e-3, eps=1e-30, weight_decay=0.0),
                      lambda p: PaperCautiousAdamW(p, lr=1e-3, eps=1e-30)) <= TOL


def test_cautious_lion_matches_pytorch_optimizer():
    po = _po()
    assert cnn_parity(lambda p: CautiousLion(p, lr=1e-3, weight_decay=0.1),
                      lambda p: po.Lion(p, lr=1e-3, weight_decay=0.1, cautious=True)) <= TOL


def test_cautious_mask_values():
    u = [torch.tensor([1.0, -2.0, 3.0, 0.5])]
    g = [torch.tensor([2.0, 1.0, 1.0, -1.0])]
    (mask,) = cautious_mask(u, g)
    torch.testing.assert_close(mask, torch.tensor([1.0, 0.0, 1.0, 0.0]) * 4 / 3)


def test_cautious_never_moves_against_the_gradient():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6, 5))
    opt = CautiousAdamW([w], lr=0.1, weight_decay=0.0)
    for _ in range(5):
        w.grad = torch.randn(6, 5)
        before = w.detach().clone()
        opt.step()
        assert ((w.detach() - before) * w.grad <= 0).all()


# -- ADOPT ----------------------------------------------------------------------------------------
def _adopt():
    return pytest.importorskip("adopt", reason="parity needs the official ADOPT package: pip install torch-adopt")


@pytest.mark.parametrize("kw", [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decouple=True),
                                dict(betas=(0.8, 0.99), eps=1e-4)])
def test_adopt_matches_official(kw):
    official = _adopt()
    assert cnn_parity(lambda p: ADOPT(p, lr=1e-3, **kw), lambda p: official.ADOPT(p, lr=1e-3, **kw)) <= TOL


def test_adopt_without_clipping_matches_official():
    official = _adopt()
    assert cnn_parity(lambda p: ADOPT(p, lr=1e-3, clip_exponent=None),
                      lambda p: official.ADOPT(p, lr=1e-3, clip_lambda=None)) <= TOL


def test_adopt_first_step_moves_nothing_even_with_decay():
    w = torch.nn.Parameter(torch.ones(3))
    opt = ADOPT([w], lr=0.1, weight_decay=0.5, decouple=True)
    w.grad = torch.full((3,), 2.0)
    opt.step()
    assert torch.equal(w.detach(), torch.ones(3))
    torch.testing.assert_close(opt.state[w]["adopt.exp_avg_sq"], torch.full((3,), 4.0))


# -- LaProp ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(), dict(eps=1e-8), dict(betas=(0.8, 0.95), eps=1e-6)])
def test_laprop_matches_the_official_update(kw):
    assert cnn_parity(lambda p: LaProp(p, lr=1e-3, **kw), lambda p: OfficialLaProp(p, lr=1e-3, **kw)) <= TOL


# -- MARS -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(), dict(weight_decay=0.1, gamma=0.05), dict(betas=(0.9, 0.999), eps=1e-6)])
def test_mars_matches_the_official_update(kw):
    # pytorch-optimizer's MARS adds 1e-15 to v inside the root and eps before the bias correction; the
    # official code (and gradkit) take sqrt(v) / sqrt(1 - b2^t) + eps.
    assert cnn_parity(lambda p: MARS(p, lr=1e-3, optimize_1d=True, **kw), lambda p: OfficialMARS(p, lr=1e-3, **kw)) <= TOL


def test_mars_correction_and_clip():
    # b1 = 0.5, gamma = 1: c = g + (g - g_prev); step 1: c = 2 g (norm 0.2 < 1, kept)
    w = torch.nn.Parameter(torch.zeros(2, 2))
    opt = MARS([w], lr=0.0, betas=(0.5, 0.9), gamma=1.0)
    g1 = torch.full((2, 2), 0.05)
    w.grad = g1.clone()
    opt.step()
    torch.testing.assert_close(opt.state[w]["adam.exp_avg"], 0.5 * 2 * g1)
    w.grad = torch.full((2, 2), 1.0)  # c = 2 - 0.05 = 1.95 each: norm 3.9 > 1, clipped to unit norm
    opt.step()
    torch.testing.assert_close(opt.state[w]["adam.exp_avg"], 0.5 * (0.5 * 2 * g1) + 0.5 * torch.full((2, 2), 0.5))
    assert torch.equal(opt.state[w]["mars.last_grad"], torch.ones(2, 2))


def test_mars_leaves_vectors_to_adamw_by_default():
    v = torch.nn.Parameter(torch.zeros(3))
    opt = MARS([v])
    v.grad = torch.ones(3)
    opt.step()
    assert "mars.last_grad" not in opt.state[v]


# -- shared checks ------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda p: CautiousAdamW(p, lr=1e-2), lambda p: ADOPT(p, lr=1e-2),
                                  lambda p: LaProp(p, lr=1e-2), lambda p: MARS(p, lr=1e-2, optimize_1d=True)])
def test_tensors_at_different_steps(make):
    check_staggered_steps(make)


def test_state_bytes():
    check_state_bytes(lambda p: ADOPT(p), tensors_per_param=2)
    check_state_bytes(lambda p: LaProp(p), tensors_per_param=2)
    check_state_bytes(lambda p: CautiousAdamW(p), tensors_per_param=2)
    check_state_bytes(lambda p: MARS(p, optimize_1d=True), tensors_per_param=3)


@pytest.mark.parametrize("make, bad", [
    (ADOPT, dict(clip_exponent=-1.0)), (ADOPT, dict(betas=(0.9, 1.0))), (LaProp, dict(eps=0.0)),
    (MARS, dict(gamma=-0.1)), (MARS, dict(optimize_1d="yes")), (CautiousAdamW, dict(betas=(1.0, 0.9))),
])
def test_bad_arguments(make, bad):
    check_rejects(make, **bad)


@pytest.mark.parametrize("inner", ["ademamix", "trust_region"])
def test_cautious_wraps_other_transforms(inner):
    import gradkit
    from gradkit.transforms import cautious, scale_by_ademamix, scale_by_learning_rate, scale_by_trust_region

    base = scale_by_ademamix() if inner == "ademamix" else scale_by_trust_region()
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6, 5))
    opt = gradkit.Optimizer([w], gradkit.chain(cautious(base), scale_by_learning_rate()), defaults={"lr": 0.01})
    for _ in range(4):
        w.grad = torch.randn(6, 5)
        before = w.detach().clone()
        opt.step()
        moved = w.detach() - before
        assert ((moved * w.grad) <= 0).all() and (moved != 0).any()


def test_cautious_nests_its_inner_state_and_takes_the_widest_kind():
    from gradkit.core.state import FIRST_MOMENT, PER_TENSOR, SECOND_MOMENT, WHOLE_MATRIX
    from gradkit.transforms import cautious, scale_by_adam, scale_by_soap

    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = CautiousAdamW([w], lr=0.1)
    w.grad = torch.randn(4, 3)
    opt.step()
    keys = {"step", "cautious.inner.adam.exp_avg", "cautious.inner.adam.exp_avg_sq"}
    assert set(opt.state[w]) == keys
    assert opt.transform.kind_of("cautious.inner.adam.exp_avg") == FIRST_MOMENT
    assert opt.transform.kind_of("cautious.inner.adam.exp_avg_sq") == SECOND_MOMENT
    with pytest.raises(KeyError, match="declares no kind"):
        opt.transform.kind_of("cautious.adam.exp_avg")
    restored = CautiousAdamW([torch.nn.Parameter(w.detach().clone())], lr=0.1)
    restored.load_state_dict(opt.state_dict())
    assert set(restored.state[restored.param_groups[0]["params"][0]]) == keys
    assert cautious(scale_by_adam()).kind == PER_TENSOR
    assert cautious(scale_by_soap()).kind == WHOLE_MATRIX


@pytest.mark.parametrize("name,kind", [
    ("scale_by_soap", "whole_matrix"), ("scale_by_shampoo", "whole_matrix"), ("scale_by_psgd_kron", "whole_matrix"),
    ("scale_by_prodigy", "per_tensor_reduction"), ("scale_by_dadapt_adam", "per_tensor_reduction"),
    ("mars_correction", "per_tensor_reduction"), ("scale_by_adopt", "elementwise"), ("scale_by_laprop", "elementwise"),
    ("scale_by_rms", "elementwise"),
])
def test_frontier_transforms_declare_how_far_their_arithmetic_reaches(name, kind):
    import gradkit.transforms as T

    assert getattr(T, name).kind == kind
