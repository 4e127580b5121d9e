"""Lion against ``pytorch_optimizer.Lion`` (the official update: sign(b1 m + (1 - b1) g), m <- b2 m + (1 - b2) g,
decoupled decay), and the sign_momentum transform."""
from __future__ import annotations

import pytest
import torch

import gradkit
from gradkit.optim import AdamW, Lion
from gradkit.transforms import scale_by_learning_rate, sign_momentum

from support import check_reduces_losses, check_rejects, check_staggered_steps, check_state_bytes, parity, smooth_net

TOL = 1e-5


@pytest.mark.parametrize("kw", [dict(), dict(weight_decay=0.1, betas=(0.95, 0.98))])
def test_matches_reference(kw):
    po = pytest.importorskip("pytorch_optimizer", reason="parity needs pytorch-optimizer: pip install pytorch-optimizer")
    assert parity(lambda p: Lion(p, lr=1e-3, **kw), lambda p: po.Lion(p, lr=1e-3, **kw)) <= TOL


def test_first_steps_follow_the_equations():
    b1, b2, lr, wd = 0.9, 0.99, 0.1, 0.5
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = Lion([w], lr=lr, betas=(b1, b2), weight_decay=wd)
    p, m = w.detach().clone(), torch.zeros(3)
    for g in (torch.tensor([1.0, 1.0, -1.0]), torch.tensor([-3.0, 0.5, 0.2])):
        u = torch.sign(b1 * m + (1 - b1) * g)
        m = b2 * m + (1 - b2) * g
        p = p * (1 - lr * wd) - lr * u
        w.grad = g.clone()
        opt.step()
        torch.testing.assert_close(w.detach(), p)


def test_sign_momentum_output_is_a_sign():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(4))]
    opt = gradkit.Optimizer(params, gradkit.chain(sign_momentum((0.9, 0.99)), scale_by_learning_rate(1.0)),
                            defaults={"lr": 1.0})
    for _ in range(3):
        before = [p.detach().clone() for p in params]
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
        for b, p in zip(before, params):
            step = (b - p.detach()).abs()
            assert (step - 1.0).abs().max() < 1e-6  # random gradients: no coordinate is exactly zero


def test_behaviour():
    check_reduces_losses(lambda p: Lion(p, lr=0.05), lambda p: Lion(p, lr=5e-3))


def test_state_is_half_of_adamw():
    check_state_bytes(lambda p: Lion(p), tensors_per_param=1)
    model = smooth_net()
    lion, adamw = Lion(model.parameters()), AdamW(model.parameters())
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    lion.step()
    adamw.step()
    assert 2 * lion.state_bytes() == adamw.state_bytes()


def test_bad_arguments():
    check_rejects(Lion, betas=(1.0, 0.99))
    check_rejects(Lion, weight_decay=-0.1)
    check_rejects(Lion, lr=-1.0)


def test_tensors_at_different_steps():
    check_staggered_steps(lambda p: Lion(p, lr=0.1, weight_decay=0.1))
