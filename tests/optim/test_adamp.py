"""AdamP and SGDP against the official ``adamp`` package, and properties of ``project_radial``."""
from __future__ import annotations

import pytest
import torch

import gradkit
from gradkit.optim import SGDP, AdamP
from gradkit.transforms import project_radial, scale_by_adam, scale_by_learning_rate
from gradkit.transforms.radial import CHANNEL, LAYER, NOT_PROJECTED, radial_modes

from support import (check_reduces_losses, check_rejects, check_staggered_steps, check_state_bytes, digits_batch,
                     parity, smooth_net)

TOL = 1e-5


def _official():
    return pytest.importorskip("adamp", reason="parity needs the official AdamP package: pip install adamp")


def test_the_parity_model_has_a_projected_weight():
    # Otherwise the parity tests below would not exercise the projection.
    model = smooth_net()
    x, y = digits_batch(64)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    params = list(model.parameters())
    modes = radial_modes([p.grad for p in params], params, 0.1, 1e-8)
    assert modes[0] == CHANNEL and modes[-2] == NOT_PROJECTED


@pytest.mark.parametrize("nesterov", [False, True])
def test_adamp_matches_official(nesterov):
    adamp = _official()
    kw = dict(lr=1e-2, weight_decay=1e-2, nesterov=nesterov)
    assert parity(lambda p: AdamP(p, **kw), lambda p: adamp.AdamP(p, **kw)) <= TOL


@pytest.mark.parametrize("kw", [dict(momentum=0.9, dampening=0.1, weight_decay=1e-3),
                                dict(momentum=0.9, weight_decay=1e-3, nesterov=True)])
def test_sgdp_matches_official(kw):
    adamp = _official()
    assert parity(lambda p: SGDP(p, lr=0.1, **kw), lambda p: adamp.SGDP(p, lr=0.1, **kw)) <= TOL


def test_sgdp_paper_variant_keeps_the_momentum_unprojected():
    model = smooth_net()
    x, y = digits_batch(64)
    opt = SGDP(model.parameters(), lr=0.1, momentum=0.9, project_momentum=False)
    grads = []
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads.append(model[0].weight.grad.clone())
        opt.step()
    expected = torch.zeros_like(grads[0])
    for g in grads:
        expected = 0.9 * expected + g
    torch.testing.assert_close(opt.state[model[0].weight]["radial.inner.momentum.momentum_buffer"], expected)


def _scale_invariant_case(rows=6, cols=5, seed=0):
    torch.manual_seed(seed)
    w = torch.randn(rows, cols)
    g = torch.randn(rows, cols)
    g -= (g * w).sum(1, keepdim=True) / (w * w).sum(1, keepdim=True) * w  # g orthogonal to w, row by row
    return w, g


def _apply(transform, params, grads):
    opt = gradkit.Optimizer(params, gradkit.chain(transform, scale_by_learning_rate(1.0)), defaults={"lr": 1.0})
    before = [p.detach().clone() for p in params]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()
    return [b - p.detach() for b, p in zip(before, params)], opt  # the update u (p <- p - u)


def test_projection_is_orthogonal_to_each_channel():
    w, g = _scale_invariant_case()
    u = torch.randn_like(w)
    # Measured on g, applied to u: wrap a transform that ignores its input and returns u.
    param = torch.nn.Parameter(w.clone())
    (update,), _ = _apply(project_radial(_Constant(u)), [param], [g])
    assert radial_modes([g], [w], 0.1, 1e-8) == [CHANNEL]
    torch.testing.assert_close((update * w).sum(1), torch.zeros(w.shape[0]), atol=1e-5, rtol=0)
    # Only the radial part was removed.
    w_hat = w / w.norm(dim=1, keepdim=True)
    torch.testing.assert_close(update, u - (u * w_hat).sum(1, keepdim=True) * w_hat, atol=1e-5, rtol=1e-5)


def test_projection_falls_back_to_the_whole_layer():
    torch.manual_seed(1)
    w = torch.randn(4, 50)
    g = torch.randn(4, 50)
    g -= (g * w).sum() / (w * w).sum() * w  # orthogonal to w as a whole only: rows keep large cosines
    g[0] += 0.5 * w[0]
    g[1] -= 0.5 * w[1] * (w[0] * w[0]).sum() / (w[1] * w[1]).sum()
    assert radial_modes([g], [w], 0.1, 1e-8) == [LAYER]
    param = torch.nn.Parameter(w.clone())
    (update,), _ = _apply(project_radial(), [param], [g])
    assert abs((update * w).sum().item()) < 1e-4 * update.norm().item() * w.norm().item()


def test_no_projection_for_vectors_or_aligned_gradients():
    w, _ = _scale_invariant_case()
    bias = torch.randn(6)
    params = [torch.nn.Parameter(w.clone()), torch.nn.Parameter(bias.clone())]
    grads = [w.clone(), torch.randn(6)]  # gradient along the weight: not scale-invariant
    updates, _ = _apply(project_radial(), params, grads)
    assert radial_modes(grads, [w, bias], 0.1, 1e-8) == [NOT_PROJECTED, NOT_PROJECTED]
    torch.testing.assert_close(updates[0], grads[0])
    torch.testing.assert_close(updates[1], grads[1])


def test_weight_decay_ratio_only_where_projected():
    w, g = _scale_invariant_case()
    other = torch.randn(3, 4)
    params = [torch.nn.Parameter(w.clone()), torch.nn.Parameter(other.clone())]
    grads = [torch.zeros_like(w) + 0 * g, torch.zeros_like(other)]
    grads[0] = g
    updates, _ = _apply(project_radial(weight_decay=0.5, wd_ratio=0.1), params, [grads[0], other.clone()])
    # Second tensor: its gradient is itself (aligned), so not projected and decayed fully.
    torch.testing.assert_close(updates[1], other + 0.5 * other)
    # First tensor: projected gradient (g is already tangent) plus the reduced decay.
    torch.testing.assert_close(updates[0], g + 0.05 * w, atol=1e-5, rtol=1e-5)


def test_project_radial_composes_with_another_optimizer():
    # Wrap Adam: the applied steps of the scale-invariant weight are tangent to it.
    model = smooth_net()
    transform = gradkit.chain(project_radial(scale_by_adam()), scale_by_learning_rate(1e-2))
    opt = gradkit.Optimizer(model.parameters(), transform, defaults={"lr": 1e-2})
    x, y = digits_batch(64)
    w = model[0].weight
    for _ in range(3):
        before = w.detach().clone()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        step = w.detach() - before
        cos = (step * before).sum(1).abs() / (step.norm(dim=1) * before.norm(dim=1))
        assert cos.max() < 1e-3
    assert "radial.inner.adam.exp_avg" in opt.state[w]


def test_behaviour():
    check_reduces_losses(lambda p: AdamP(p, lr=0.05), lambda p: AdamP(p, lr=1e-2))
    check_reduces_losses(lambda p: SGDP(p, lr=0.01, momentum=0.9), lambda p: SGDP(p, lr=0.1, momentum=0.9))


def test_state_bytes():
    check_state_bytes(lambda p: AdamP(p), tensors_per_param=2)  # Adam's: the projection keeps no state
    check_state_bytes(lambda p: SGDP(p, momentum=0.9), tensors_per_param=1)


def test_bad_arguments():
    check_rejects(AdamP, delta=-1.0)
    check_rejects(AdamP, wd_ratio=1.5)
    check_rejects(SGDP, momentum=1.0)
    with pytest.raises(TypeError, match="inner"):
        project_radial(inner="adam")


class _Constant(gradkit.GradientTransform):
    """Returns a fixed update whatever the gradient (to separate what is measured from what is projected)."""

    name = "constant"

    def __init__(self, value):
        self.value = value

    def update(self, updates, state, params, ctx):
        return ctx.fresh([self.value.clone()])


def test_projected_steps_are_tangent_for_any_shape():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=25, deadline=None)
    @hypothesis.given(rows=st.integers(1, 6), cols=st.integers(2, 9), seed=st.integers(0, 2**16),
                      adam=st.booleans())
    def check(rows, cols, seed, adam):
        w, g = _scale_invariant_case(rows, cols, seed)
        inner = scale_by_adam() if adam else None  # quotient (pending n / d) and plain paths
        param = torch.nn.Parameter(w.clone())
        (update,), _ = _apply(project_radial(inner), [param], [g])
        mode = radial_modes([g], [w], 0.1, 1e-8)[0]
        assert mode in (CHANNEL, LAYER)
        radial = (update * w).sum(1) if mode == CHANNEL else (update * w).sum().reshape(1)
        assert radial.abs().max() <= 1e-4 * update.norm() * w.norm()

    check()


def test_a_pending_decay_inside_inner_is_not_projected():
    from gradkit.transforms import add_decayed_weights

    w, g = _scale_invariant_case()
    param = torch.nn.Parameter(w.clone())
    (update,), _ = _apply(project_radial(gradkit.chain(scale_by_adam(), add_decayed_weights(0.5))), [param], [g])
    # Adam's first step is g / |g| elementwise (projected); the decay 0.5 w is added on top, unprojected.
    radial = ((update - 0.5 * w) * w).sum(1)
    assert radial.abs().max() < 1e-4 * w.norm() ** 2
    assert (update * w).sum(1).min() > 0.4 * (w * w).sum(1).min()


def test_tensors_at_different_steps():
    check_staggered_steps(lambda p: AdamP(p, lr=0.1, weight_decay=0.1, nesterov=True))
    check_staggered_steps(lambda p: SGDP(p, lr=0.1, momentum=0.9, weight_decay=0.1))
