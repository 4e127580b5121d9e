"""The arrow-pointing arena task: its generator and one tiny run through the arena's runner."""
import pytest
import torch

from gradkit.bench.runner import Contestant, run_one
from gradkit.bench.spec import parse_spec
from gradkit.bench.tasks import make_task
from gradkit.bench.tasks.arrow_pointing import arrow_pointing_images


def test_generator_is_seeded_balanced_and_binary():
    a, la = arrow_pointing_images(400, 48, torch.Generator().manual_seed(0))
    b, lb = arrow_pointing_images(400, 48, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert a.shape == (400, 1, 48, 48) and set(a.unique().tolist()) == {0.0, 1.0}
    assert 0.4 < la.float().mean() < 0.6
    # Every image holds a disk (at least pi * 4^2 ~ 50 pixels) and an arrow, and shapes stay small.
    ink = a.sum((1, 2, 3))
    assert ink.min() > 50 and ink.max() < 0.15 * 48 * 48
    big, _ = arrow_pointing_images(50, 96, torch.Generator().manual_seed(1))
    assert big.sum((1, 2, 3)).mean() < 2 * ink[:50].mean()  # same shapes in pixels on a 4x larger canvas
    with pytest.raises(ValueError, match="too small for the geometry"):
        arrow_pointing_images(2, 32, torch.Generator())


def test_task_trains_all_three_models_and_reports_both_sizes():
    task = make_task("arrow-pointing:steps=2,eval_every=2,batch_size=4,val_images=8,patch_size=12")
    record = run_one(task, task.load(torch.device("cpu")), Contestant(parse_spec("adamw")), {}, seed=0)
    assert record.status == "ok", record.error
    for name in ("plstm", "vit", "cnn"):
        for size in ("1x", "2x"):
            assert 0.0 <= record.final_val[f"{name}_acc_{size}"] <= 1.0
    assert record.final_val["metric"] == record.final_val["plstm_acc_2x"]
    with pytest.raises(ValueError, match="model must be 'all' or one of plstm, vit, cnn"):
        make_task("arrow-pointing:model=mlp")
    with pytest.raises(ValueError, match=r"image_size \(50\) must be a multiple of patch_size \(6\)"):
        make_task("arrow-pointing:image_size=50")
