from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from gradkit.inspect import Inspector, load_log, plot_runs
from gradkit.models import DigitsCNN


def _train(inspector_kwargs=None, tmp_path=None, steps=7):
    torch.manual_seed(0)
    model = DigitsCNN(channels=4).train()
    g = torch.Generator().manual_seed(1)
    data = [(torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(steps)]
    probe = (torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    inspector = None
    if inspector_kwargs is not None:
        inspector = Inspector(model, F.cross_entropy, probe, optimizer=opt, log_path=tmp_path / "log.jsonl", **inspector_kwargs)
    for step, (x, y) in enumerate(data):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if inspector is None:
            opt.step()
        else:
            with inspector.step(step, train_loss=loss):
                opt.step()
    return model, opt, inspector


def test_inspector_logs_every_n_steps_without_changing_training(tmp_path):
    kwargs = dict(every=3, overlap_k=3, trace_samples=4, noise_small_batch=8, scale_invariant=["conv1.weight", "conv2.weight"])
    plain, plain_opt, _ = _train()
    watched, watched_opt, inspector = _train(kwargs, tmp_path)
    # Training is bit-for-bit the same with and without the inspector.
    for (name, a), b in zip(plain.state_dict().items(), watched.state_dict().values()):
        assert torch.equal(a, b), name
    records = load_log(tmp_path / "log.jsonl")
    assert [r["step"] for r in records] == [0, 3, 6] and records == json.loads(json.dumps(inspector.records))
    first = records[0]
    assert first["lr"] == 0.1 and first["two_over_lr"] == pytest.approx(20.0) and first["momentum_threshold"] == pytest.approx(38.0)
    assert len(first["top_eigenvalues"]) == 1 and 0.0 <= first["overlap"] <= 1.0 + 1e-6 and "minibatch_overlap" in first
    assert first["trace_interval"][0] <= first["trace"] <= first["trace_interval"][1]
    assert isinstance(first["train_loss"], float) and "noise_scale_smoothed" in first
    layers = first["layers"]["conv1.weight"]
    assert set(layers) == {"grad_norm", "update_ratio", "angular_update", "weight_norm", "norm_growth"}
    assert set(first["effective_step"]) == {"conv1.weight", "conv2.weight"}
    # Warm starts honour the cap of max_hvps=20 products (convergence within it is tested on
    # models whose exact Hessian is known, in test_inspect_eigen.py).
    assert all(r["sharpness_hvps"] <= 20 and isinstance(r["sharpness_converged"], bool) for r in records[1:])
    paths = inspector.plot(tmp_path / "plots")
    names = {p.name for p in paths}
    assert {"inspect_sharpness.png", "inspect_overlap.png", "inspect_effective_step.png", "inspect_trace.png"} <= names
    assert all(p.stat().st_size > 1000 for p in paths)
    both = plot_runs({"a": records, "b": tmp_path / "log.jsonl"}, "sharpness", tmp_path / "both.png")
    assert both is not None and both.exists()


def test_inspector_bad_arguments():
    model = DigitsCNN(channels=2)
    probe = (torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="every must be a positive integer"):
        Inspector(model, F.cross_entropy, probe, every=0)
    with pytest.raises(ValueError, match="scale_invariant must name parameters"):
        Inspector(model, F.cross_entropy, probe, scale_invariant=["conv9.weight"])
    with pytest.raises(ValueError, match="trace_samples must be 0"):
        Inspector(model, F.cross_entropy, probe, trace_samples=1)
    with pytest.raises(ValueError, match="noise_small_batch must divide"):
        Inspector(model, F.cross_entropy, probe, noise_small_batch=3)
    with pytest.raises(ValueError, match="overlap_max_hvps must be"):
        Inspector(model, F.cross_entropy, probe, overlap_k=4, overlap_max_hvps=2)
    with pytest.raises(ValueError, match="quantity must be one of"):
        plot_runs({"a": []}, "curvature", "x.png")


def test_cli_plots_logs(tmp_path, capsys):
    from gradkit.cli import main

    _, _, inspector = _train(dict(every=3, scale_invariant=["conv1.weight"]), tmp_path, steps=4)
    assert main(["inspect", str(tmp_path / "log.jsonl"), "--labels", "sgd", "--quantities", "sharpness", "effective_step", "--out", str(tmp_path / "cli")]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == ["inspect_effective_step.png", "inspect_sharpness.png"]
    assert main(["inspect", str(tmp_path / "log.jsonl"), "--quantities", "curvature"]) == 2
    assert "--quantities must be among" in capsys.readouterr().err
