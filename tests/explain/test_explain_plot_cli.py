"""Pictures and the ``gradkit explain`` command."""
from __future__ import annotations

import pytest
import torch

from gradkit.registry import ATTRIBUTIONS

pytest.importorskip("matplotlib", reason="the plots need matplotlib")

from gradkit.cli import main
from gradkit.datasets import digits
from gradkit.explain import integrated_gradients, saliency
from gradkit.explain.plot import heatmap, plot_attributions

PNG = b"\x89PNG\r\n\x1a\n"


def test_heatmap_is_scaled_per_image():
    a = torch.randn(3, 2, 5, 5)
    h = heatmap(a)
    assert h.shape == (3, 5, 5)
    torch.testing.assert_close(h.flatten(1).amax(1), torch.ones(3))
    assert h.min() >= 0


def test_plot_attributions_writes_a_png_grid(tmp_path, trained_cnn):
    x = digits("val", image=True).inputs[:2]
    attrs = {"saliency": saliency(trained_cnn, x, None), "ig": integrated_gradients(trained_cnn, x, None, steps=8)}
    path = tmp_path / "grid.png"
    fig = plot_attributions(x, attrs, path)
    assert path.read_bytes()[:8] == PNG
    assert len(fig.axes) == 2 * 3 + 1  # the grid and one colour bar
    assert fig.axes[-1].get_ylabel() == "|attribution| / image max"
    assert [ax.get_title() for ax in fig.axes[:3]] == ["input", "saliency", "ig"]
    with pytest.raises(ValueError, match="spatial shape"):
        plot_attributions(x, {"bad": torch.zeros(2, 1, 4, 4)})


def test_cli_explain_with_checkpoint(tmp_path, trained_cnn, capsys):
    ckpt = tmp_path / "model.pt"
    torch.save(trained_cnn.state_dict(), ckpt)
    out = tmp_path / "out"
    code = main(["explain", "--checkpoint", str(ckpt), "--index", "3", "--methods", "saliency,igos", "--eval-images", "2", "--randomization", "--out", str(out)])
    assert code == 0
    assert (out / "explain_digits_3.png").read_bytes()[:8] == PNG
    table = (out / "auc.md").read_text().splitlines()
    assert table[0].startswith("| method | deletion AUC (#3)")
    assert [row.split("|")[1].strip() for row in table[2:]] == ["saliency", "igos"]
    csv = (out / "auc.csv").read_text().splitlines()
    assert len(csv) == 3 and all(0 <= float(v) <= 1 for v in csv[1].split(",")[1:])
    randomization = (out / "randomization.md").read_text().splitlines()
    assert randomization[0] == "| method | +head | +bn2 | +conv2 | +bn1 | +conv1 |"
    assert all(-1 <= float(v) <= 1 for v in randomization[2].split("|")[2:-1])


def test_cli_trains_once_then_reuses_the_cached_model(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    argv = ["explain", "--epochs", "1", "--methods", "saliency", "--eval-images", "0", "--out", str(out)]
    assert main(argv) == 0
    assert (out / "digits_cnn.pt").is_file() and (out / "explain_digits_7.png").is_file()
    captured = capsys.readouterr()
    first = captured.out
    assert "which the next gradkit explain" in first and "--checkpoint" in first
    assert captured.err == ""  # progress bars only on a terminal
    table = (out / "auc.md").read_text()

    import gradkit.explain.cli as explain_cli

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although the output directory holds the model")

    monkeypatch.setattr(explain_cli, "train_digits_cnn", no_training)
    assert main(argv) == 0
    assert f"reusing {out / 'digits_cnn.pt'}" in capsys.readouterr().out
    assert (out / "auc.md").read_text() == table  # the same model, the same numbers
    # Other settings, or --retrain, train again.
    with pytest.raises(AssertionError, match="trained again"):
        main([*argv, "--seed", "1"])
    with pytest.raises(AssertionError, match="trained again"):
        main([*argv, "--retrain"])


def test_cli_method_names_match_the_registry():
    from gradkit.explain.cli import METHOD_NAMES
    from gradkit.explain.methods import METHODS

    assert METHOD_NAMES == tuple(sorted(METHODS))


def test_cli_unknown_method_names_the_allowed_ones(tmp_path, capsys):
    assert main(["explain", "--methods", "ig,gradcam", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown attribution method 'gradcam'" in err and "allowed: " + ", ".join(sorted(ATTRIBUTIONS.names())) in err


def test_cli_missing_checkpoint(tmp_path, capsys):
    assert main(["explain", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
