from gradkit.bench import BenchConfig, markdown_report, rank, render_report, run_bench, terminal_summary


def test_ranking_follows_the_metric_direction(tiny_results):
    rows = rank(tiny_results, "quadratic")
    distances = [r.val_metric[0] for r in rows]
    assert distances == sorted(distances)  # distance: lower is better, so ascending
    assert all(r.runs == 2 and r.ok == 2 and r.status == "ok" for r in rows)
    assert terminal_summary(tiny_results).splitlines()[0].startswith("quadratic (15 steps, ranked by validation distance")


def test_sweep_table_marks_the_choice_and_flags_edge_choices(tmp_path):
    results = run_bench(BenchConfig(tasks=["quadratic:steps=10,eval_every=5"], optimizers=["torch:SGD"],
                                    sweep={"lr": [0.001, 0.01, 0.1]}))
    row, = rank(results, "quadratic")
    assert row.hparams == {"lr": 0.1}  # on this convex problem the largest stable step wins
    md = markdown_report(results)
    chosen = next(r for r in results.runs if r.selected)
    assert f"| **{chosen.final_val['metric']:.4f}** |" in md and md.count("**") == 2
    assert "Chosen at the edge of the sweep" in md and "torch:SGD (lr=0.1)" in md
    files = render_report(results, tmp_path, plots=False)
    assert [f.name for f in files] == ["report.md"] and (tmp_path / "report.md").read_text() == md


def test_report_lists_diverged_and_interrupted_runs():
    results = run_bench(BenchConfig(tasks=["quadratic:steps=10,eval_every=5"], optimizers=["torch:SGD:lr=100", "torch:SGD:lr=0.5"]))
    results.status = "interrupted"
    rows = rank(results, "quadratic")
    assert [r.contestant for r in rows] == ["torch:SGD:lr=0.5", "torch:SGD:lr=100"]  # all-diverged last
    assert rows[1].status == "1/1 diverged" and rows[1].val_metric is None
    md = markdown_report(results)
    assert "**Status: interrupted.**" in md and "1/1 diverged" in md


def test_overview_across_tasks_orders_by_mean_rank():
    results = run_bench(BenchConfig(tasks=["quadratic:steps=8,eval_every=4", "rosenbrock:steps=8,eval_every=4"],
                                    optimizers=["torch:SGD:lr=0.0001", "torch:Adam:lr=0.1"]))
    md = markdown_report(results)
    overview = md[md.index("## Overview"):md.index("## quadratic")]
    assert "| optimizer | quadratic (distance) | rosenbrock (distance) | mean rank |" in overview
    # Adam with a real step beats SGD with a tiny one on both problems: rank 1 twice
    assert overview.index("torch:Adam:lr=0.1") < overview.index("torch:SGD:lr=0.0001")
    assert "(1) | 1.0 |" in overview and "(2) | 2.0 |" in overview
    assert "## Overview" not in markdown_report(run_bench(BenchConfig(tasks=["quadratic:steps=2"], optimizers=["torch:SGD"])))


def test_plots_tell_every_series_apart_and_call_out_identical_curves(tiny_results, tmp_path, monkeypatch):
    import matplotlib.figure

    from gradkit.bench import BenchResults, rank
    from gradkit.bench.plots import plot_task

    data = tiny_results.to_dict()
    twin = [{**r, "contestant": "torch:SGD:copy", "optimizer": "torch:SGD:copy"} for r in data["runs"]
            if r["contestant"] == "torch:SGD:lr=0.5"]
    results = BenchResults.from_dict({**data, "runs": data["runs"] + twin})
    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: saved.append(fig))
    plot_task(results, "quadratic", rank(results, "quadratic"), tmp_path)
    fig = saved[0]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "torch:SGD:copy (identical to torch:SGD:lr=0.5)" in labels
    lines = fig.axes[0].get_lines()
    assert len({(str(line.get_color()), line.get_marker()) for line in lines}) == len(lines) == 3
    assert any(line.get_linestyle() != "-" for line in lines)  # the twin is dashed over its original
