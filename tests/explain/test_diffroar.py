"""DiffROAR: positive for a ranking that puts the discriminative pixels first, negative for the reverse,
and the masks keep exactly the stated fraction."""
import importlib
from types import SimpleNamespace

import pytest
import torch

from gradkit.explain.diffroar import diffroar, keep_mask, results_table


def _split(n, seed):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.rand(n, 1, 8, 8, generator=gen)
    x[:, 0, :2, :2] = y.view(-1, 1, 1).float()  # the only discriminative pixels: the top-left 2x2 block
    return SimpleNamespace(inputs=x, targets=y)


INFORMATIVE = torch.zeros(1, 1, 8, 8)
INFORMATIVE[..., :2, :2] = 1.0


def oracle(model, inputs, target):
    return (INFORMATIVE + 0.01 * torch.arange(64.0).view(1, 1, 8, 8) / 64).expand_as(inputs).clone()


def reversed_oracle(model, inputs, target):
    return 1.0 - oracle(model, inputs, target)


def test_keep_mask_keeps_the_fraction_by_magnitude():
    attr = torch.tensor([[[[4.0, -3.0], [0.5, 1.0]]]]).expand(2, 3, 2, 2)  # channels are summed
    top = keep_mask(attr, 0.5, top=True)
    assert top.shape == attr.shape and torch.equal(top[0, 0], torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert torch.equal(keep_mask(attr, 0.5, top=False)[1, 2], torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert keep_mask(torch.randn(3, 10), 0.3, top=True).sum(1).tolist() == [3.0, 3.0, 3.0]


def test_discriminative_ranking_is_positive_and_its_reverse_negative():
    train, test = _split(200, 0), _split(200, 1)
    good = diffroar(None, oracle, train, test, fractions=(0.1,), epochs=10)
    bad = diffroar(None, reversed_oracle, train, test, fractions=(0.1,), epochs=10)
    assert good.top[0] > 0.95 and good.bottom[0] < 0.7 and good.diff[0] > 0.3
    assert bad.diff[0] == pytest.approx(-good.diff[0])  # the same two masked datasets, swapped
    assert good.trainings == 2 and "oracle" in results_table([good, bad])


def test_bad_options():
    train = _split(10, 0)
    for options, word in [({"fractions": (0.0,)}, "fractions"), ({"retrain": "resnet"}, "retrain"), ({"repeats": 0}, "repeats")]:
        with pytest.raises(ValueError, match=word):
            diffroar(None, oracle, train, train, **options)


def test_the_command_dispatches_to_diffroar(monkeypatch):
    from gradkit.cli import main

    called = {}
    module = importlib.import_module("gradkit.explain.diffroar")  # the package exports the function under this name
    monkeypatch.setattr(module, "run_from_args", lambda args: called.setdefault("methods", args.methods) and 0)
    assert main(["explain", "--evaluate", "diffroar", "--methods", "saliency"]) == 0
    assert called["methods"] == "saliency"
