"""OPT-AMSGrad (Wang et al., arXiv:1903.01435): the two-sequence algorithm box, unrolled by hand."""
import pytest
import torch

import gradkit
from gradkit.optim import OptimisticAMSGrad
from gradkit.transforms.optimistic_amsgrad import rmpe
from support import check_reduces_losses, check_rejects, check_staggered_steps, check_state_bytes


def _paper_rmpe(xs, lam):
    """Algorithm 3 on the concatenated vectors, with U^T U normalised by its top eigenvalue."""
    x = torch.stack(xs)
    u = (x[1:] - x[:-1]).T
    gram = u.T @ u
    gram = gram / torch.linalg.eigvalsh(gram)[-1]
    z = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=x.dtype), torch.ones(gram.shape[0], dtype=x.dtype))
    c = z / z.sum()
    return (c[:, None] * x[:-1]).sum(0)


def _paper_opt_amsgrad(w0, grad_fn, steps, lr, b1, b2, eps, r, lam, predictor):
    """Algorithm 2 as printed: w_{t+1/2} and w_{t+1} kept separately (flat float64 vectors)."""
    w = w0.clone()
    w_half = w0.clone()  # w_{-1/2} = w_1
    theta = torch.zeros_like(w)
    theta_prev = torch.zeros_like(w)
    v = torch.full_like(w, eps)
    vhat = torch.full_like(w, eps)
    grads, path = [], []
    for _ in range(steps):
        g = grad_fn(w)
        grads.append(g)
        theta_prev, theta = theta, b1 * theta + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vhat = torch.maximum(vhat, v)
        w_half = w_half - lr * theta / vhat.sqrt()
        if predictor == "last" or len(grads) < r + 1:
            m = g
        else:
            m = _paper_rmpe(grads[-(r + 1):], lam)
        h = b1 * theta_prev + (1 - b1) * m
        w = w_half - lr * h / vhat.sqrt()
        path.append(w.clone())
    return path


@pytest.mark.parametrize("predictor", ["rmpe", "last"])
def test_matches_the_algorithm_box_unrolled_by_hand(predictor):
    torch.manual_seed(0)
    shapes = [(3, 4), (5,)]
    sizes = [12, 5]
    curv = torch.rand(17, dtype=torch.float64) * 4 + 0.5
    noise = torch.randn(12, 17, dtype=torch.float64) * 0.3

    step = {"t": 0}

    def grad_fn(w):  # a noisy quadratic: the gradient depends on the point and the step
        g = curv * w + noise[step["t"]]
        step["t"] += 1
        return g

    w0 = torch.randn(17, dtype=torch.float64)
    kw = dict(lr=0.05, b1=0.9, b2=0.99, eps=1e-8, r=3, lam=1e-6, predictor=predictor)
    expected = _paper_opt_amsgrad(w0, grad_fn, 12, **kw)

    params = [torch.nn.Parameter(part.reshape(s).clone()) for part, s in zip(w0.split(sizes), shapes)]
    opt = OptimisticAMSGrad(params, lr=0.05, betas=(0.9, 0.99), eps=1e-8, history=3, lam=1e-6, predictor=predictor)
    for t in range(12):
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        g = curv * flat + noise[t]
        for p, gp in zip(params, g.split(sizes)):
            p.grad = gp.reshape(p.shape).clone()
        opt.step()
        got = torch.cat([p.detach().reshape(-1) for p in params])
        torch.testing.assert_close(got, expected[t], rtol=1e-9, atol=1e-10)


def test_rmpe_finds_the_fixed_point_of_a_linear_iteration():
    torch.manual_seed(1)
    a = torch.randn(3, 3, dtype=torch.float64)
    a = 0.5 * a / torch.linalg.matrix_norm(a, 2)
    b = torch.randn(3, dtype=torch.float64)
    xs = [torch.randn(3, dtype=torch.float64)]
    for _ in range(4):  # r = 4 differences of a 3-dim linear map: the minimal polynomial is found
        xs.append(a @ xs[-1] + b)
    fixed = torch.linalg.solve(torch.eye(3, dtype=torch.float64) - a, b)
    # U^T U is singular (c with U c = 0 exists): a tiny regularisation selects that c
    torch.testing.assert_close(rmpe(torch.stack(xs), 1e-12), fixed, rtol=1e-5, atol=1e-7)
    # the last iterate alone is still far from it
    assert (xs[-1] - fixed).norm() > 1e-3


def test_history_and_offset_state_and_bytes():
    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = OptimisticAMSGrad([w], history=2)
    w.grad = torch.randn(4, 3)
    opt.step()
    state = opt.state[w]
    assert state["optimistic_amsgrad.history"].shape == (4, 3, 3)
    assert opt.state_bytes() == sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    last = OptimisticAMSGrad([w], predictor="last")
    w.grad = torch.randn(4, 3)
    last.step()
    assert "optimistic_amsgrad.history" not in last.state[w]


def test_reduces_losses():
    check_reduces_losses(lambda p: OptimisticAMSGrad(p, lr=0.05), lambda p: OptimisticAMSGrad(p, lr=1e-3))


def test_state_bytes_last_predictor():
    # theta, theta_prev, v, vhat, offset
    check_state_bytes(lambda p: OptimisticAMSGrad(p, predictor="last"), 5)


def test_staggered_steps_last_predictor():
    # RMPE extrapolates the whole group jointly, so only the "last" predictor is per tensor
    check_staggered_steps(lambda p: OptimisticAMSGrad(p, lr=0.01, predictor="last"))


@pytest.mark.parametrize("bad", [{"history": 0}, {"predictor": "mean"}, {"lam": -1.0}, {"eps": 0.0},
                                 {"betas": (0.9, 1.0)}])
def test_rejects(bad):
    check_rejects(OptimisticAMSGrad, **bad)
