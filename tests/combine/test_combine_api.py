from __future__ import annotations

import pytest
import torch

from gradkit import combine

from combine_problems import two_head_problem


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("batched", [False, True])
def test_sum_matches_backward_of_summed_loss(batched):
    model, losses = two_head_problem()
    sum(losses()).backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    combine.backward(losses(), model.parameters(), combine.get_aggregator("sum"), batched=batched)
    for got, want in zip(_grads(model), expected):
        torch.testing.assert_close(got, want)


def test_mean_is_sum_over_m():
    model, losses = two_head_problem(m=4)
    combine.backward(losses(), model.parameters(), combine.Sum())
    total = _grads(model)
    model.zero_grad(set_to_none=True)
    combine.backward(losses(), model.parameters(), combine.Mean())
    for got, want in zip(_grads(model), total):
        torch.testing.assert_close(got, want / 4)


def test_batched_and_looped_jacobians_agree():
    model, losses = two_head_problem(m=3)
    a = combine.jacobian(losses(), model.parameters(), batched=False)
    b = combine.jacobian(losses(), model.parameters(), batched=True)
    assert a.shape == (3, sum(p.numel() for p in model.parameters()))
    torch.testing.assert_close(a, b)


def test_backward_accumulates_into_existing_grad():
    model, losses = two_head_problem()
    combine.backward(losses(), model.parameters(), combine.Sum())
    once = _grads(model)
    combine.backward(losses(), model.parameters(), combine.Sum())
    for got, want in zip(_grads(model), once):
        torch.testing.assert_close(got, 2 * want)


def test_retain_graph_allows_second_call_and_default_frees_it():
    model, losses = two_head_problem()
    ls = losses()
    combine.backward(ls, model.parameters(), combine.Sum(), retain_graph=True)
    combine.backward(ls, model.parameters(), combine.Sum())
    with pytest.raises(RuntimeError):
        combine.backward(ls, model.parameters(), combine.Sum())


def test_unreached_parameter_gets_zero_gradient():
    a = torch.randn(3, requires_grad=True)
    b = torch.randn(2, requires_grad=True)
    combine.backward([a.sum(), (a * 2).sum()], [a, b], combine.Sum())
    torch.testing.assert_close(b.grad, torch.zeros(2))
    torch.testing.assert_close(a.grad, torch.full((3,), 3.0))


def test_diagnostics_report_conflict():
    w = torch.randn(4, requires_grad=True)
    info = combine.backward([w.sum(), -w.sum(), w[0] * 1.0], [w], combine.Sum())
    assert info.cosine.shape == (3, 3)
    torch.testing.assert_close(info.cosine[0, 1], torch.tensor(-1.0))
    assert info.conflict_fraction == pytest.approx(2 / 3)  # (0,1) and (1,2) conflict, (0,2) does not
    torch.testing.assert_close(info.norms, torch.tensor([2.0, 2.0, 1.0]))
    assert info.update_norm == pytest.approx(1.0)
    torch.testing.assert_close(info.update_cosine, torch.tensor([0.5, -0.5, 1.0]))
    assert set(info.as_dict()) >= {"cosine", "conflict_fraction", "norms", "update_norm", "update_cosine"}


def test_backward_from_gradients_lists_and_matrix():
    a = torch.zeros(2, 2, requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    g1 = [torch.ones(2, 2), torch.arange(3.0)]
    g2 = [2 * torch.ones(2, 2), -torch.arange(3.0)]
    combine.backward_from_gradients([g1, g2], [a, b], combine.Mean())
    torch.testing.assert_close(a.grad, torch.full((2, 2), 1.5))
    torch.testing.assert_close(b.grad, torch.zeros(3))
    a.grad = b.grad = None
    jac = torch.stack([torch.cat([g.reshape(-1) for g in g1]), torch.cat([g.reshape(-1) for g in g2])])
    combine.backward_from_gradients(jac, [a, b], combine.Sum())
    torch.testing.assert_close(b.grad, torch.zeros(3))
    torch.testing.assert_close(a.grad, torch.full((2, 2), 3.0))


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda p: combine.backward([], [p], combine.Sum()), ValueError, "losses"),
        (lambda p: combine.backward([p.sum()], [], combine.Sum()), ValueError, "params"),
        (lambda p: combine.backward([p.sum()], [p, p], combine.Sum()), ValueError, "more than once"),
        (lambda p: combine.backward([p * 2], [p], combine.Sum()), ValueError, "scalar"),
        (lambda p: combine.backward([p.sum()], [p], "sum"), TypeError, "aggregator"),
        (lambda p: combine.backward([p.sum()], [torch.zeros(2)], combine.Sum()), ValueError, "require grad"),
        (lambda p: combine.backward([p.sum().detach()], [p], combine.Sum()), ValueError, "require grad"),
        (lambda p: combine.backward_from_gradients(torch.zeros(2, 5), [p], combine.Sum()), ValueError, "shape"),
        (lambda p: combine.backward_from_gradients(torch.zeros(2, 3), [p], combine.Sum(), losses=[1.0]), ValueError, "losses"),
        (lambda p: combine.get_aggregator("nope"), ValueError, "pcgrad"),
    ],
)
def test_bad_input_raises_and_leaves_grad_untouched(call, exc, words):
    p = torch.ones(3, requires_grad=True)
    p.grad = torch.full((3,), 7.0)
    with pytest.raises(exc, match=words):
        call(p)
    torch.testing.assert_close(p.grad, torch.full((3,), 7.0))


def test_registry_names_and_classes():
    for name in ("sum", "mean", "pcgrad"):
        agg = combine.get_aggregator(name)
        assert isinstance(agg, combine.AGGREGATORS[name])
        assert isinstance(agg, combine.Aggregator)


def test_works_with_torch_optimizer_step():
    model, losses = two_head_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    agg = combine.get_aggregator("pcgrad", seed=0)
    first = float(sum(losses()).detach())
    for _ in range(20):
        opt.zero_grad()
        combine.backward(losses(), model.parameters(), agg)
        opt.step()
    assert float(sum(losses()).detach()) < first


def test_refused_step_keeps_the_graph_usable():
    w = torch.ones(3, requires_grad=True)
    losses = [w.sum(), (w ** 2).sum(), w.prod()]
    with pytest.raises(ValueError, match="pref_vector"):
        combine.backward(losses, [w], combine.UPGrad(torch.ones(2)))
    with pytest.raises(ValueError, match="at least 2"):
        combine.backward(losses[:1], [w], combine.OrthogonalGradient())
    assert w.grad is None
    combine.backward(losses, [w], combine.Sum())  # the graph was not consumed by the refused calls
    torch.testing.assert_close(w.grad, torch.full((3,), 4.0))
