"""⊥Grad (Prieto et al., ICLR 2025): the update is orthogonal to the weights, per tensor."""
import pytest
import torch

import gradkit
from gradkit.optim import PerpAdamW
from support import digits_mlp_losses


def _shapes():
    # equal sizes (stacked together), a large tensor (reduced through a view), a vector and a scalar
    return [(4, 3), (3, 4), (12,), (300, 300), (5,), ()]


def _one_step(transform, fused=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in _shapes()]
    grads = [torch.randn(s, generator=g) + 3.0 * p.detach() for s, p in zip(_shapes(), params)]
    for p, gr in zip(params, grads):
        p.grad = gr.clone()
    before = [p.detach().clone() for p in params]
    opt = gradkit.Optimizer(params, gradkit.chain(transform, gradkit.scale(-1.0)), fused=fused)
    opt.step()
    steps = [b - p.detach() for b, p in zip(before, params)]  # the transformed gradient
    return before, grads, steps


@pytest.mark.parametrize("renormalize", [False, True])
def test_update_is_orthogonal_to_each_weight(renormalize):
    weights, grads, updates = _one_step(gradkit.orthogonal_grad(renormalize=renormalize))
    for w, g, u in zip(weights, grads, updates):
        cos = torch.dot(u.reshape(-1), w.reshape(-1)) / (u.norm() * w.norm())
        if w.dim() == 0:  # a scalar has no orthogonal complement: the update vanishes
            assert u.abs().item() < 1e-6
            continue
        assert abs(cos.item()) < 1e-6, (w.shape, cos.item())
        if renormalize:
            torch.testing.assert_close(u.norm(), g.norm(), rtol=1e-5, atol=0)


def test_equals_the_paper_formula_in_float64():
    weights, grads, updates = _one_step(gradkit.orthogonal_grad())
    for w, g, u in zip(weights, grads, updates):
        w64, g64 = w.double().reshape(-1), g.double().reshape(-1)
        expected = g64 - (g64 @ w64) / (w64 @ w64) * w64
        torch.testing.assert_close(u.double().reshape(-1), expected, rtol=1e-5, atol=1e-5)


def test_tangent_gradient_passes_unchanged_and_radial_one_vanishes():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
    opt = gradkit.Optimizer([w], gradkit.chain(gradkit.orthogonal_grad(), gradkit.scale(-1.0)))
    w.grad = torch.tensor([[-4.0, 3.0]])
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([[7.0, 1.0]]))
    w.grad = 2.5 * w.detach().clone()
    before = w.detach().clone()
    opt.step()
    torch.testing.assert_close(w.detach(), before)


def test_leaves_the_gradient_itself_untouched():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    w.grad = torch.tensor([1.0, 0.0])
    gradkit.Optimizer([w], gradkit.chain(gradkit.orthogonal_grad(), gradkit.scale(-1.0))).step()
    assert w.grad.tolist() == [1.0, 0.0]


def test_in_a_chain_with_adam_the_moments_see_the_projected_gradient():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6, 5))
    grad = torch.randn(6, 5) + 2 * w.detach()
    w0 = w.detach().clone()
    opt = PerpAdamW([w], lr=0.1, betas=(0.9, 0.999))
    w.grad = grad.clone()
    opt.step()
    projected = grad - (grad * w0).sum() / (w0 * w0).sum() * w0
    torch.testing.assert_close(opt.state[w]["adam.exp_avg"], 0.1 * projected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(opt.state[w]["adam.exp_avg_sq"], 0.001 * projected ** 2, rtol=1e-5, atol=1e-9)
    # and training goes on from there
    for _ in range(3):
        w.grad = torch.randn(6, 5)
        opt.step()
    assert torch.isfinite(w).all()


def test_fused_step_matches_unfused():
    torch._dynamo.reset()
    _, _, unfused = _one_step(gradkit.orthogonal_grad(renormalize=True))
    _, _, fused = _one_step(gradkit.orthogonal_grad(renormalize=True), fused=True)
    for a, b in zip(unfused, fused):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # reduction order differs; |u| ~ 3


def test_perp_adamw_trains_the_digits_mlp():
    # (not the shared quadratic check: a loss that depends on the weights' norm only, as 0.5 c w^2 with
    # equal c, cannot be reduced by steps orthogonal to the weights, which only grow their norm)
    before, after = digits_mlp_losses(lambda params: PerpAdamW(params, lr=1e-2))
    assert after < 0.6 * before, (before, after)


@pytest.mark.parametrize("kwargs, word", [({"renormalize": 1}, "renormalize"), ({"eps": 0.0}, "eps")])
def test_rejects_bad_arguments_leaving_params(kwargs, word):
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    w.grad = torch.tensor([1.0, 0.0])
    with pytest.raises(ValueError, match=word):
        gradkit.Optimizer([w], gradkit.chain(gradkit.orthogonal_grad(**kwargs), gradkit.scale(-1.0))).step()
    assert w.tolist() == [1.0, 2.0]
