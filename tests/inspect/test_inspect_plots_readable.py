"""Inspection plots a reader can read: one colour and marker per series, the legend beside the data."""
import pytest

pytest.importorskip("matplotlib", reason="the plots need matplotlib")

from gradkit.inspect.plots import plot_runs


def _log(layers: int, scale: float) -> list[dict]:
    return [{"step": s, "layers": {f"layer{i}": {"update_ratio": scale * (i + 1) * (s + 1)} for i in range(layers)}}
            for s in range(5)]


def _figure_of(monkeypatch):
    figures = []
    import gradkit.inspect.plots as plots

    original = plots._save

    def keep(fig, ax, *args):
        figures.append((fig, ax))
        return original(fig, ax, *args)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def test_fourteen_series_are_told_apart_and_the_legend_hides_nothing(tmp_path, monkeypatch):
    figures = _figure_of(monkeypatch)
    assert plot_runs({"SGD": _log(7, 1e-3), "SGDP": _log(7, 2e-3)}, "update_ratio", tmp_path / "u.png").is_file()
    (fig, ax), = figures
    lines = ax.get_lines()
    assert len(lines) == 14
    assert len({(str(line.get_color()), line.get_marker()) for line in lines}) == 14
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the axes, not over the curves


def test_sharpness_legend_leaves_the_threshold_line_visible(tmp_path, monkeypatch):
    figures = _figure_of(monkeypatch)
    records = [{"step": s, "top_eigenvalues": [5.0 - s], "two_over_lr": 20.0} for s in range(5)]
    plot_runs({"SGD": records, "SGDP": records}, "sharpness", tmp_path / "s.png")
    (fig, ax), = figures
    fig.canvas.draw()
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    assert "2/lr" in [t.get_text() for t in ax.get_legend().get_texts()]
