"""U-DoG (and its building block DoG): the equations unrolled by hand, the official DoG package, and the
behaviour the paper claims (parameter-free, accelerated on smooth problems, convergent under noise)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from gradkit.optim import DoG, UDoG

from support import check_rejects, check_state_bytes, digits_batch, digits_batches


# -- U-DoG written out from the equations of gradkit.transforms.udog, on one flat float64 vector ---------
def reference_udog(grad_at, x0, iters, lr=1.0, reps_rel=1e-6, max_distance=math.inf, eps=1e-8):
    """The U-DoG iterates ``(xt_t, xb_t)`` for ``t = 1..iters``; ``grad_at(point, t, query)`` is the oracle."""
    def project(v):
        off = v - x0
        dist = off.norm().item()
        return (x0 + off * (max_distance / dist), max_distance) if dist > max_distance else (v, dist)

    r = reps_rel * (1 + x0.norm().item())
    S, W, G = r, 0.0, None
    y, xb = x0.clone(), x0.clone()
    out = []
    for t in range(1, iters + 1):
        alpha = S / r
        w = alpha * r
        W_prev, W = W, W + w
        xt = (W_prev * xb + w * y) / W
        m = grad_at(xt, t, 0)
        if G is None:
            G = m.dot(m).item()
        eta = lr * r / (math.sqrt(G) + eps)
        x, dist_x = project(y - alpha * eta * m)
        xb = (W_prev * xb + w * x) / W
        g = grad_at(xb, t, 1)
        y, dist_y = project(y - alpha * eta * g)
        G += alpha ** 2 * (g - m).dot(g - m).item()
        r = max(r, dist_x, dist_y)
        S += r
        out.append((xt, xb))
    return out


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def _quadratic(seed=0):
    """f(W, v) = 1/2 ||A vec(W) + B v - c||^2 / n over two tensors (one param group, one vector)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(40, 12, generator=g, dtype=torch.float64)
    B = torch.randn(40, 3, generator=g, dtype=torch.float64)
    c = torch.randn(40, generator=g, dtype=torch.float64)
    params = [torch.nn.Parameter(torch.randn(4, 3, generator=g, dtype=torch.float64)),
              torch.nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64))]

    def loss(Wm, v, rows=slice(None)):
        return 0.5 * ((A[rows] @ Wm.reshape(-1) + B[rows] @ v - c[rows]) ** 2).mean()

    return params, loss


@pytest.mark.parametrize("kw", [dict(), dict(reps_rel=1e-3, lr=0.5), dict(reps_rel=1e-2, max_distance=0.3)])
def test_udog_on_a_quadratic_equals_the_equations(kw):
    params, loss = _quadratic()
    x0 = _flat([p.detach() for p in params])
    rows = [torch.randint(0, 40, (8,), generator=torch.Generator().manual_seed(i)) for i in range(40)]

    def grad_at(point, t, query):  # a fresh minibatch per query, as a stochastic oracle
        Wm = point[:12].clone().requires_grad_()
        v = point[12:].clone().requires_grad_()
        return _flat(torch.autograd.grad(loss(Wm, v, rows[2 * (t - 1) + query]), (Wm, v)))

    expected = reference_udog(grad_at, x0, 12, **kw)
    opt = UDoG(params, **kw)
    for t in range(1, 13):
        for query in (0, 1):
            assert torch.allclose(_flat([p.detach() for p in params]), expected[t - 1][query], atol=1e-6, rtol=0)
            opt.zero_grad()
            loss(*params, rows[2 * (t - 1) + query]).backward()
            opt.step()
        opt.eval()  # the output point xb_t
        assert torch.allclose(_flat([p.detach() for p in params]), expected[t - 1][1], atol=1e-6, rtol=0)
        opt.train()


def test_udog_on_a_tiny_mlp_equals_the_equations_with_closure_steps():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10)).double()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    batches = [(x.double(), y) for x, y in digits_batches(4, 64)]

    def unflat(v):
        out, i = {}, 0
        for n, s in zip(names, shapes):
            out[n] = v[i:i + s.numel()].reshape(s)
            i += s.numel()
        return out

    def grad_at(point, t, query):
        point = point.clone().requires_grad_()
        x, y = batches[(2 * (t - 1) + query) % 4]
        return torch.autograd.grad(F.cross_entropy(functional_call(model, unflat(point), (x,)), y), point)[0]

    x0 = _flat([p.detach() for p in model.parameters()])
    expected = reference_udog(grad_at, x0, 10, reps_rel=1e-4)
    opt = UDoG(model.parameters(), reps_rel=1e-4)
    calls = [0]

    def closure():
        x, y = batches[calls[0] % 4]
        calls[0] += 1
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for t in range(1, 11):
        opt.step(closure)  # a whole iteration: both queries
        assert calls[0] == 2 * t
        opt.eval()
        assert torch.allclose(_flat([p.detach() for p in model.parameters()]), expected[t - 1][1], atol=1e-6, rtol=0)
        opt.train()


def test_the_first_query_moves_exactly_r_eps():
    params, loss = _quadratic()
    x0 = _flat([p.detach() for p in params])
    opt = UDoG(params, reps_rel=1e-3, lr=0.5)
    loss(*params).backward()
    opt.step()
    moved = (_flat([p.detach() for p in params]) - x0).norm().item()
    assert moved == pytest.approx(0.5 * 1e-3 * (1 + x0.norm().item()), rel=1e-6)  # eps in the denominator


def test_plain_steps_and_closure_steps_are_the_same_iterations():
    params_a, loss = _quadratic()
    params_b = [p.detach().clone().requires_grad_() for p in params_a]
    rows = [torch.randint(0, 40, (8,), generator=torch.Generator().manual_seed(i)) for i in range(20)]
    opt_a, opt_b = UDoG(params_a), UDoG(params_b)
    for i in range(20):  # 20 half-steps
        opt_a.zero_grad()
        loss(*params_a, rows[i]).backward()
        opt_a.step()
    calls = iter(range(20))

    def closure():
        opt_b.zero_grad()
        value = loss(*params_b, rows[next(calls)])
        value.backward()
        return value

    for _ in range(10):
        opt_b.step(closure)
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b))


def test_state_dict_mid_iteration_continues_identically():
    params_a, loss = _quadratic()
    opt_a = UDoG(params_a)
    for i in range(5):  # stops after an iteration's first query
        opt_a.zero_grad(); loss(*params_a).backward(); opt_a.step()
    assert opt_a.phase() == 1
    params_b = [p.detach().clone().requires_grad_() for p in params_a]
    opt_b = UDoG(params_b)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    for params, opt in ((params_a, opt_a), (params_b, opt_b)):
        for _ in range(5):
            opt.zero_grad(); loss(*params).backward(); opt.step()
        opt.eval()
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b))


@pytest.mark.parametrize("make, key", [(UDoG, "udog"), (DoG, "dog")])
def test_a_started_group_state_missing_an_estimate_is_refused_on_load(make, key):
    params, loss = _quadratic()
    opt = make(params)
    for _ in range(3):
        opt.zero_grad(); loss(*params).backward(); opt.step()
    sd = copy.deepcopy(opt.state_dict())
    del sd["gradkit"]["group_states"][0][key]["r"]
    before = copy.deepcopy(opt.group_states)
    with pytest.raises(ValueError, match=r"\['%s'\] has no 'r'" % key):
        opt.load_state_dict(sd)
    assert opt.group_states == before


def test_eval_and_train_move_between_the_query_point_and_the_average():
    params, loss = _quadratic()
    opt = UDoG(params, reps_rel=1e-2)
    opt.eval(); opt.train()  # before any step both are x_0: nothing moves
    for _ in range(6):
        opt.zero_grad(); loss(*params).backward(); opt.step()
    query = [p.detach().clone() for p in params]
    opt.eval()
    assert not opt.train_mode and not all(torch.equal(a, b) for a, b in zip(query, params))
    with pytest.raises(RuntimeError, match="train()"):
        opt.step()
    opt.train()
    assert all(torch.allclose(a, b, atol=1e-12, rtol=0) for a, b in zip(query, params))


@pytest.mark.parametrize("bad", [dict(reps_rel=0.0), dict(max_distance=0.0), dict(max_distance=-1.0), dict(lr=-1.0),
                                 dict(eps=-1.0)])
def test_udog_rejects_bad_arguments(bad):
    check_rejects(UDoG, **bad)


def test_udog_state_is_three_tensors_per_param():
    check_state_bytes(UDoG, 3)  # x_0, y and the first query's gradient


# -- what the paper claims ---------------------------------------------------------------------------------
def _least_squares(noise=0.5, seed=0, n=400, d=20):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = A @ torch.randn(d, generator=g, dtype=torch.float64) + noise * torch.randn(n, generator=g, dtype=torch.float64)
    solution = torch.linalg.lstsq(A, b.unsqueeze(1)).solution.squeeze(1)
    f = lambda x: 0.5 * ((A @ x - b) ** 2).mean()  # noqa: E731
    return A, b, f, f(solution).item()


def _udog_on_least_squares(reps_rel, iters, batch=None, seed=0):
    A, b, f, f_star = _least_squares()
    rng = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.zeros(A.shape[1], dtype=torch.float64))
    opt = UDoG([w], reps_rel=reps_rel)
    estimates = []

    def closure():
        opt.zero_grad()
        rows = slice(None) if batch is None else torch.randint(0, A.shape[0], (batch,), generator=rng)
        loss = 0.5 * ((A[rows] @ w - b[rows]) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(iters):
        opt.step(closure)
        estimates.append(dict(opt.group_states[0][opt._namespace()]))
    opt.eval()
    return f(w.detach()).item() - f_star, f(torch.zeros_like(w)).item() - f_star, estimates


@pytest.mark.parametrize("reps_rel", [1e-8, 1e-6, 1e-4])
def test_noisy_least_squares_converges_without_tuning_for_any_initial_movement(reps_rel):
    # minibatches of 32 rows: the gradients are noisy; 300 iterations (600 queries) from x_0 = 0 close the
    # initial gap to within 1% (about 0.03 against f* = 0.12 and an initial gap of 10), for an
    # initial movement spanning four orders of magnitude
    gap, initial_gap, _ = _udog_on_least_squares(reps_rel, 300, batch=32)
    assert gap < 0.01 * initial_gap


def test_the_distance_estimate_and_the_gradient_sum_only_grow_and_set_the_step():
    _, _, est = _udog_on_least_squares(1e-6, 60, batch=32)
    r = [e["r"] for e in est]
    G = [e["G"] for e in est]
    assert all(b >= a for a, b in zip(r, r[1:])) and all(b >= a for a, b in zip(G, G[1:]))
    assert r[-1] > 1e4 * r[0]  # from r_eps up to the scale of the distance to the solution
    # eta_t = r_{t-1} / (sqrt(G_{t-1}) + eps); alpha_t = sum_{k<t} r_k / r_{t-1}
    for before, now in zip(est, est[1:]):
        assert now["eta"] == pytest.approx(before["r"] / (math.sqrt(before["G"]) + 1e-8), rel=1e-12)
        assert now["alpha"] == pytest.approx(now["S"] / now["r"], rel=1e-12)


def test_without_noise_the_gradient_sum_stops_growing_and_the_solution_is_reached():
    # UniXGrad's denominator sums ||g_t - m_t||^2, which vanishes on a smooth noiseless problem: the step
    # size settles instead of decaying (DoG's sum of ||g||^2 keeps growing), and 100 iterations reach f*
    # to float64 rounding
    gap, initial_gap, est = _udog_on_least_squares(1e-6, 100)
    assert est[-1]["G"] < 1.001 * est[49]["G"]
    assert gap < 1e-12 * initial_gap


def test_accelerated_on_an_ill_conditioned_quadratic_at_the_same_gradient_budget():
    # f(x) = 1/2 sum h_i x_i^2 with curvatures 1e-3 .. 1: U-DoG, 150 iterations (300 gradients), against
    # DoG with 300 gradient steps, both parameter-free from the same start
    h = torch.logspace(-3, 0, 50, dtype=torch.float64)
    f = lambda x: 0.5 * (h * x * x).sum()  # noqa: E731
    start = torch.ones(50, dtype=torch.float64)
    gaps = {}
    for name, make, steps in (("udog", UDoG, 150), ("dog", DoG, 300)):
        w = torch.nn.Parameter(start.clone())
        opt = make([w])

        def closure():
            opt.zero_grad()
            value = f(w)
            value.backward()
            return value

        for _ in range(steps):
            opt.step(closure)
        if name == "udog":
            opt.eval()
        gaps[name] = f(w.detach()).item()
    assert gaps["udog"] < 0.1 * gaps["dog"]


# -- DoG against the official package ----------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(), dict(reps_rel=1e-4, weight_decay=0.01), dict(lr=0.5, eps=1e-6)])
def test_dog_matches_official(kw):
    official = pytest.importorskip("dog", reason="parity needs the official DoG package: pip install dog-optimizer")
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    b = copy.deepcopy(a)
    ours, theirs = DoG(a.parameters(), **kw), official.DoG(b.parameters(), **kw)
    for x, y in digits_batches(8, 64) * 25:  # 200 steps
        for model, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    # largest relative difference per tensor (measured 2.8e-6 with weight decay, 5e-7 without)
    assert max(((p - q).abs().max() / q.abs().max()).item() for p, q in zip(a.parameters(), b.parameters())) <= 1e-5


def test_dog_first_step_moves_r_eps_and_reduces_digits_loss():
    x, y = digits_batch(256)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    x0 = _flat([p.detach() for p in model.parameters()])
    opt = DoG(model.parameters(), reps_rel=1e-4)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if len(losses) == 1:
            moved = (_flat([p.detach() for p in model.parameters()]) - x0).norm().item()
            assert moved == pytest.approx(1e-4 * (1 + x0.norm().item()), rel=1e-5)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("bad", [dict(reps_rel=0.0), dict(lr=-1.0), dict(eps=-1.0), dict(weight_decay=-1.0)])
def test_dog_rejects_bad_arguments(bad):
    check_rejects(DoG, **bad)
