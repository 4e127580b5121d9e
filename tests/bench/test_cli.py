import json

from gradkit.cli import main


def test_end_to_end_bench_then_report(tmp_path, capsys):
    argv = ["bench", "--task", "quadratic:steps=12,eval_every=4", "--opt", "torch:SGD:lr=0.5", "--opt", "torch:Adam:lr=0.1",
            "--seeds", "2", "--out-dir", str(tmp_path), "--name", "e2e", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "torch:SGD:lr=0.5" in out and "val distance" in out
    run = tmp_path / "e2e"
    names = {p.name for p in run.iterdir()}
    assert {"results.json", "report.md", "quadratic_loss_vs_step.png", "quadratic_loss_vs_time.png",
            "quadratic_state_memory.png", "quadratic_trajectories.png"} <= names
    data = json.loads((run / "results.json").read_text())
    assert data["status"] == "complete" and len(data["runs"]) == 4
    assert data["command"].startswith("gradkit bench --task quadratic:steps=12,eval_every=4 --opt torch:SGD:lr=0.5")
    report = (run / "report.md").read_text()
    assert "| 1 |" in report and "![quadratic_trajectories](quadratic_trajectories.png)" in report

    (run / "report.md").unlink()
    (run / "quadratic_trajectories.png").unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "report.md").read_text() == report and (run / "quadratic_trajectories.png").exists()


def test_bad_spec_is_one_clear_line(tmp_path, capsys):
    code = main(["bench", "--task", "quadratic", "--opt", "torch:SGD:lr=1e-3x", "--out-dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "'1e-3x'" in err and "Traceback" not in err
    assert not (tmp_path / "quadratic").exists()


def test_list_tasks(capsys):
    assert main(["bench", "--list-tasks"]) == 0
    out = capsys.readouterr().out
    assert "digits-cnn" in out and "stdlib-lm" in out and "options:" in out


def test_wrongly_typed_task_option_is_one_clear_line(tmp_path, capsys):
    code = main(["bench", "--task", "digits-mlp:hidden=0.5", "--out-dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "option 'hidden' must be int" in err and "Traceback" not in err


def test_no_progress_bars_when_stderr_is_not_a_terminal(tmp_path, capsys):
    argv = ["bench", "--task", "quadratic:steps=5,eval_every=5", "--opt", "torch:SGD:lr=0.5", "--no-plots",
            "--out-dir", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "\x1b[" not in captured.out and "\r" not in captured.out
