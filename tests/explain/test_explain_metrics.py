"""Deletion / insertion curves and the model-randomisation sanity check."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gradkit.datasets import digits
from gradkit.explain import deletion_curve, insertion_curve, integrated_gradients, model_randomization, saliency, spearman


@pytest.fixture
def linear_scores():
    model = nn.Linear(6, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]]))
    return model


def test_deletion_curve_follows_the_ranking(linear_scores):
    x = torch.ones(1, 6, dtype=torch.float64)
    good = linear_scores.weight.detach().clone()  # delete the largest contributions first
    curve = deletion_curve(linear_scores, x, None, good, probabilities=False)
    torch.testing.assert_close(curve.fractions, torch.arange(7, dtype=torch.float64) / 6)
    torch.testing.assert_close(curve.scores[0], torch.tensor([21.0, 15, 10, 6, 3, 1, 0], dtype=torch.float64))
    worse = deletion_curve(linear_scores, x, None, -good, probabilities=False)
    assert curve.auc.item() < worse.auc.item()
    torch.testing.assert_close(curve.auc, torch.trapezoid(curve.scores, curve.fractions))


def test_insertion_is_the_mirror_of_deletion(linear_scores):
    x = torch.ones(1, 6, dtype=torch.float64)
    attr = linear_scores.weight.detach().clone()
    ins = insertion_curve(linear_scores, x, None, attr, probabilities=False)
    torch.testing.assert_close(ins.scores[0], torch.tensor([0.0, 6, 11, 15, 18, 20, 21], dtype=torch.float64))


def test_curves_on_images_start_and_end_at_input_and_baseline(trained_cnn):
    val = digits("val", image=True)
    x, y = val.inputs[:3], val.targets[:3]
    attr = saliency(trained_cnn, x, y)
    with torch.no_grad():
        p_input = trained_cnn(x).softmax(1)[torch.arange(3), y]
        p_base = trained_cnn(torch.zeros_like(x)).softmax(1)[torch.arange(3), y]
    d = deletion_curve(trained_cnn, x, y, attr, steps=16)
    i = insertion_curve(trained_cnn, x, y, attr, steps=16)
    assert d.scores.shape == (3, 17) and d.fractions.shape == (17,)
    torch.testing.assert_close(d.scores[:, 0], p_input)
    torch.testing.assert_close(d.scores[:, -1], p_base)
    torch.testing.assert_close(i.scores[:, 0], p_base)
    torch.testing.assert_close(i.scores[:, -1], p_input)
    chunked = deletion_curve(trained_cnn, x, y, attr, steps=16, batch_size=5)
    torch.testing.assert_close(chunked.scores, d.scores)


def test_spearman():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0]])
    torch.testing.assert_close(spearman(a, b), torch.tensor([1.0, -1.0], dtype=torch.float64))


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_model_randomization(mode, trained_cnn):
    x = digits("val", image=True).inputs[:4]
    before = {k: v.clone() for k, v in trained_cnn.state_dict().items()}
    results = model_randomization(trained_cnn, saliency, x, None, mode=mode)
    names = ["head", "bn2", "conv2", "bn1", "conv1"]
    if mode == "cascading":
        assert [r.layers for r in results] == [tuple(names[: i + 1]) for i in range(5)]
    else:
        assert [r.layers for r in results] == [(n,) for n in names]
    for r in results:
        assert r.correlation.shape == (4,)
        assert (r.correlation.abs() <= 1 + 1e-12).all()
    # randomising everything destroys the explanation of the trained model
    if mode == "cascading":
        assert results[-1].correlation.mean() < 0.6
    for k, v in trained_cnn.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_model_randomization_passes_options(trained_cnn):
    x = digits("val", image=True).inputs[:2]
    results = model_randomization(trained_cnn, integrated_gradients, x, 0, mode="independent", absolute=False, steps=8)
    assert len(results) == 5


def test_spearman_with_ties_matches_average_ranks():
    a = torch.tensor([[0.0, 0.0, 1.0, 2.0, 0.0, 3.0]])
    b = torch.tensor([[5.0, 1.0, 1.0, 2.0, 0.0, 9.0]])
    ra = torch.tensor([2.0, 2.0, 4.0, 5.0, 2.0, 6.0], dtype=torch.float64)  # 1-based mean ranks
    rb = torch.tensor([5.0, 2.5, 2.5, 4.0, 1.0, 6.0], dtype=torch.float64)
    expected = torch.corrcoef(torch.stack((ra, rb)))[0, 1]
    torch.testing.assert_close(spearman(a, b), expected.view(1))
    constant = torch.zeros(1, 6)
    assert spearman(constant, b).item() == 0.0  # no ranking at all: no correlation
