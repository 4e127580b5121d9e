"""XGrad weight prediction: the paper's formulas for SGDM, Adam, AdamW; exact restore; errors; behaviour."""
from __future__ import annotations

import pytest
import torch

import gradkit
from gradkit.optim.xgrad import predicted_weights
from support import Quadratic, digits_batches, digits_loss, mlp, synthetic_batches, train


def _warm(opt_factory, steps=3):
    model = mlp()
    opt = opt_factory(model.parameters())
    train(model, opt, steps, synthetic_batches())
    return model, opt


def _expected_adam(opt, p, lr, betas, eps, wd, s, key=""):
    state = opt.state[p]
    t = float(state["step"])
    m_hat = state[key + "exp_avg"] / (1 - betas[0] ** t)
    v_hat = state[key + "exp_avg_sq"] / (1 - betas[1] ** t)
    return p - s * lr * (m_hat / (v_hat.sqrt() + eps) + wd * p)


@pytest.mark.parametrize("kind", ["gradkit", "torch"])
def test_sgd_momentum_prediction(kind):
    cls = gradkit.optim.SGD if kind == "gradkit" else torch.optim.SGD
    key = "momentum.momentum_buffer" if kind == "gradkit" else "momentum_buffer"
    model, opt = _warm(lambda p: cls(p, lr=0.1, momentum=0.9, weight_decay=1e-3))
    real = [p.detach().clone() for p in model.parameters()]
    with predicted_weights(opt, steps=2):
        for p, r in zip(model.parameters(), real):
            torch.testing.assert_close(p.detach(), r - 2 * 0.1 * opt.state[p][key])
    assert all(torch.equal(p, r) for p, r in zip(model.parameters(), real))


@pytest.mark.parametrize("kind,decoupled", [("gradkit", False), ("gradkit", True), ("torch", False), ("torch", True)])
def test_adam_and_adamw_prediction(kind, decoupled):
    if kind == "gradkit":
        cls, key = (gradkit.optim.AdamW if decoupled else gradkit.optim.Adam), "adam."
    else:
        cls, key = (torch.optim.AdamW if decoupled else torch.optim.Adam), ""
    model, opt = _warm(lambda p: cls(p, lr=1e-2, weight_decay=0.05))
    real = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        expected = [_expected_adam(opt, p, 1e-2, (0.9, 0.999), 1e-8, 0.05 if decoupled else 0.0, 1, key)
                    for p in model.parameters()]
    with predicted_weights(opt):
        for p, e in zip(model.parameters(), expected):
            torch.testing.assert_close(p.detach(), e)
    assert all(torch.equal(p, r) for p, r in zip(model.parameters(), real))


def test_gradient_is_taken_at_the_predicted_weights_and_weights_restored_on_error():
    model, opt = _warm(lambda p: gradkit.optim.SGD(p, lr=0.1, momentum=0.9))
    batch = synthetic_batches()[0]
    real = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    with predicted_weights(opt):
        predicted = [p.detach().clone() for p in model.parameters()]
        digits_loss(model, batch).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    with torch.no_grad():
        for p, q in zip(model.parameters(), predicted):
            p.copy_(q)
    opt.zero_grad()
    digits_loss(model, batch).backward()
    assert all(torch.allclose(a, p.grad) for a, p in zip(grads, model.parameters()))
    with torch.no_grad():
        for p, r in zip(model.parameters(), real):
            p.copy_(r)
    with pytest.raises(RuntimeError, match="boom"):
        with predicted_weights(opt):
            raise RuntimeError("boom")
    assert all(torch.equal(p, r) for p, r in zip(model.parameters(), real))


def test_params_without_state_are_not_moved():
    model = mlp()
    opt = gradkit.optim.Adam(model.parameters())
    real = [p.detach().clone() for p in model.parameters()]
    with predicted_weights(opt):
        assert all(torch.equal(p, r) for p, r in zip(model.parameters(), real))


def test_unknown_or_unsupported_settings_raise():
    w = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(TypeError, match="Grams"):
        with predicted_weights(gradkit.optim.Grams(w)):
            pass
    with pytest.raises(ValueError, match="momentum"):
        with predicted_weights(gradkit.optim.SGD(w, momentum=0.0)):
            pass
    w[0].grad = torch.ones(2)
    nesterov = gradkit.optim.SGD(w, momentum=0.9, nesterov=True)
    nesterov.step()
    with pytest.raises(ValueError, match="nesterov"):
        with predicted_weights(nesterov):
            pass
    with pytest.raises(ValueError, match="steps"):
        with predicted_weights(gradkit.optim.Adam(w), steps=0):
            pass


def _train_xgrad(model, opt, loss_fn, steps):
    losses = []
    for t in range(steps):
        opt.zero_grad(set_to_none=True)
        with predicted_weights(opt, steps=1):
            loss = loss_fn(t)
            loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name,lr_quad,lr_mlp", [("sgd", 0.005, 0.2), ("adamw", 0.05, 1e-2)])
def test_reduces_loss(name, lr_quad, lr_mlp):
    def make(params, lr):
        if name == "sgd":
            return gradkit.optim.SGD(params, lr=lr, momentum=0.9)
        return gradkit.optim.AdamW(params, lr=lr)

    quad = Quadratic()
    losses = _train_xgrad(quad, make(quad.parameters(), lr_quad), lambda t: quad(), 60)
    assert quad().item() < 0.1 * losses[0]
    model = mlp()
    batches = digits_batches()
    losses = _train_xgrad(model, make(model.parameters(), lr_mlp), lambda t: digits_loss(model, batches[t % len(batches)]), 40)
    assert losses[-1] < 0.5 * losses[0]
