"""Finite-difference gradient regularization (Karakida et al., ICML 2023) against double backward."""
import pytest
import torch

from gradkit.regularization import gradient_norm_regularization


def _problem():
    torch.manual_seed(0)
    x, y = torch.randn(32, 5, dtype=torch.float64), torch.randn(32, 1, dtype=torch.float64)
    w1 = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(8, 1, dtype=torch.float64, requires_grad=True)
    unused = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def f(a, b):
        return ((torch.tanh(x @ a) @ b - y) ** 2).mean()

    def loss_fn():
        return f(w1, w2)

    loss_fn.f = f
    return loss_fn, [w1, w2, unused]


def _grad(method, h=1e-2, rho=0.1, normalize=False):
    loss_fn, params = _problem()
    gradient_norm_regularization(loss_fn, params, rho=rho, h=h, method=method, normalize=normalize)
    return torch.cat([p.grad.reshape(-1) for p in params])


def test_double_backward_is_the_gradient_of_the_penalised_loss():
    loss_fn, params = _problem()
    gradient_norm_regularization(loss_fn, params, rho=0.1, method="double_backward")
    # by hand: ∇L + rho H ∇L, the Hessian-vector product from torch.autograd.functional
    w = tuple(p.detach() for p in params[:2])
    g0 = torch.autograd.grad(loss_fn(), params[:2])
    _, hvp = torch.autograd.functional.hvp(loss_fn.f, w, g0)
    for p, g, hv in zip(params, g0, hvp):
        torch.testing.assert_close(p.grad, g + 0.1 * hv)
    assert torch.equal(params[2].grad, torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("method", ["forward", "backward"])
@pytest.mark.parametrize("normalize", [False, True])
def test_finite_difference_error_shrinks_linearly_in_h(method, normalize):
    exact = _grad("double_backward")
    errors = [(_grad(method, h=h, normalize=normalize) - exact).norm().item() for h in (4e-2, 2e-2, 1e-2)]
    assert errors[0] > 0
    # O(h): halving h halves the error (a second-order error would quarter it, none would leave it)
    for big, small in zip(errors, errors[1:]):
        assert 1.7 < big / small < 2.3, errors
    assert errors[-1] < 1e-2 * exact.norm().item()


def test_forward_and_backward_errors_have_opposite_signs():
    exact = _grad("double_backward")
    forward, backward = _grad("forward", h=1e-2) - exact, _grad("backward", h=1e-2) - exact
    assert torch.dot(forward, backward) < 0


def test_params_are_restored_exactly_and_grads_overwritten():
    loss_fn, params = _problem()
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.full_like(p, 7.0)
    loss = gradient_norm_regularization(loss_fn, params, rho=0.1, h=0.3, method="forward")
    for p, b in zip(params, before):
        assert torch.equal(p.detach(), b)
    assert loss.item() == loss_fn().item()
    plain = torch.autograd.grad(loss_fn(), params[:2])
    gradient_norm_regularization(loss_fn, params, rho=0.0, method="forward")
    for p, g in zip(params, plain):
        torch.testing.assert_close(p.grad, g)  # rho = 0 is the plain gradient, not added to the old .grad
    assert torch.equal(params[2].grad, torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("kwargs, word", [
    ({"rho": -1.0}, "rho"), ({"h": 0.0}, "h"), ({"method": "central"}, "method"), ({"rho": True}, "rho"),
])
def test_rejects_bad_arguments_leaving_params(kwargs, word):
    loss_fn, params = _problem()
    before = [p.detach().clone() for p in params]
    args = {"rho": 0.1, **kwargs}
    with pytest.raises(ValueError, match=word):
        gradient_norm_regularization(loss_fn, params, **args)
    assert all(torch.equal(p.detach(), b) and p.grad is None for p, b in zip(params, before))
