"""AutoClip: the official code's equations, the threshold property, the bounded history, behaviour."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import gradkit
from gradkit.transforms.autoclip import autoclip
from support import digits_batches, mlp, run_quadratic, side_by_side, synthetic_batches, train, twin


def clipped_sgd(params, lr=0.1, percentile=10.0, history_size=1000, momentum=0.9):
    return gradkit.Optimizer(params, gradkit.chain(autoclip(percentile, history_size), gradkit.trace(momentum),
                                                   gradkit.scale_by_learning_rate()), defaults={"lr": lr})


def test_matches_official_code_equations():
    # github.com/pseeth/autoclip (autoclip.py): norm of all grads, appended to the history, then
    # clip_grad_norm_ at np.percentile(history, p); history kept whole (our buffer is larger than the run).
    model = mlp()
    reference = twin(model)
    opt = clipped_sgd(model.parameters(), lr=0.1, percentile=10.0)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    history = []

    def reference_step():
        history.append(sum(p.grad.norm(2).item() ** 2 for p in reference.parameters()) ** 0.5)
        torch.nn.utils.clip_grad_norm_(reference.parameters(), float(np.percentile(history, 10.0)))
        ref_opt.step()

    assert side_by_side(model, opt, reference, reference_step, synthetic_batches()) <= 1e-5


def test_clipped_norm_never_exceeds_threshold():
    g = torch.Generator().manual_seed(0)
    w = [torch.nn.Parameter(torch.zeros(7)), torch.nn.Parameter(torch.zeros(3, 4))]
    opt = gradkit.Optimizer(w, gradkit.chain(autoclip(25.0, history_size=16), gradkit.scale_by_learning_rate()),
                            defaults={"lr": 1.0})
    norms = []
    for t in range(60):
        spike = 100.0 if t % 7 == 3 else 1.0
        for p in w:
            p.grad = spike * torch.randn(p.shape, generator=g)
        norms.append(torch.sqrt(sum((p.grad**2).sum() for p in w)).item())
        before = [p.detach().clone() for p in w]
        opt.step()
        step_norm = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(w, before))).item()
        threshold = float(np.percentile(norms[-16:], 25.0))
        assert step_norm <= threshold * (1 + 1e-5)
        assert step_norm == pytest.approx(min(norms[-1], threshold), rel=1e-4)


def test_history_is_a_bounded_ring_buffer_saved_in_the_state_dict():
    model = mlp()
    opt = clipped_sgd(model.parameters(), history_size=5)
    batches = synthetic_batches()
    train(model, opt, 12, batches)
    state = opt.group_states[0]["autoclip"]
    assert state["history"].numel() == 5 and state["count"] == 12
    assert opt.state_bytes(by="kind")["group"] == 5 * 4
    clone = twin(model)
    opt2 = clipped_sgd(clone.parameters(), history_size=5)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as if saved to disk
    assert torch.equal(opt2.group_states[0]["autoclip"]["history"], state["history"])
    train(model, opt, 4, batches)
    train(clone, opt2, 4, batches)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), clone.parameters()))


def test_reduces_loss_in_front_of_sgd_and_adam():
    first, last = run_quadratic(lambda p: clipped_sgd(p, lr=0.005, percentile=50.0))
    assert last < 0.1 * first
    model = mlp()
    adam = gradkit.Optimizer(model.parameters(), gradkit.chain(autoclip(10.0), gradkit.scale_by_adam(),
                                                               gradkit.scale_by_learning_rate()), defaults={"lr": 1e-2})
    losses = train(model, adam, 40, digits_batches())
    assert losses[-1] < 0.5 * losses[0]


def test_bad_arguments_raise():
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="percentile"):
        clipped_sgd([w], percentile=150.0)
    with pytest.raises(ValueError, match="history_size"):
        clipped_sgd([w], history_size=0)
