"""The arena's files: confined to the run directory, escaped, validated, never lost or mislabelled.

The kill and concurrency checks run real ``gradkit bench`` processes (each bench is a few seconds);
all but the SIGKILL check are marked slow (CI runs them; ``-m "not slow"`` skips them).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gradkit.bench import BenchResults, load_results
from gradkit.bench.report import markdown_report
from gradkit.bench.rundir import RunBusyError, RunLock, lock_holder_alive, safe_filename
from gradkit.cli import main

SRC = str(Path(__file__).resolve().parents[2] / "src")
# Enough runs of the quadratic that a bench is still going when the test acts on it.
SLOW_BENCH = ["--task", "quadratic:steps=300,eval_every=100", "--opt", "torch:SGD:lr=0.1", "--opt", "torch:Adam:lr=0.1",
              "--opt", "sgd:lr=0.1", "--opt", "adam:lr=0.1", "--seeds", "40", "--no-progress", "--no-plots"]


# The bench starts as from a terminal: SIGINT at its default and unblocked. A child inherits its parent's
# disposition and mask, and a test process may have had SIGINT ignored or blocked by whatever ran in it before
# (a bench started with SIGINT ignored, as under nohup, rightly ignores Ctrl-C).
_AS_FROM_A_TERMINAL = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                       "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM}); "
                       "os.execv(sys.executable, [sys.executable, '-m', 'gradkit.cli', *sys.argv[1:]])")


def _gradkit(*argv, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", _AS_FROM_A_TERMINAL, *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _wait_for_runs(path: Path, at_least: int, proc: subprocess.Popen, timeout: float = 120) -> dict:
    """The results once they hold ``at_least`` runs; ``timeout`` only guards against a hang (a timer sets
    ``expired``, whose wait is also the pause between looks at the file)."""
    expired = threading.Event()
    timer = threading.Timer(timeout, expired.set)
    timer.start()
    try:
        while not expired.wait(0.05):
            if proc.poll() is not None:
                pytest.fail(f"bench ended early: {proc.communicate()}")
            try:
                data = json.loads(path.read_text())
                if len(data["runs"]) >= at_least:
                    return data
            except (OSError, ValueError):
                pass
    finally:
        timer.cancel()
    proc.kill()
    pytest.fail(f"no {at_least} runs in {path} after {timeout} s")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- report writes only inside the run directory, and what it copies stays inert ---------------------

def _hostile_results(tiny_results, tmp_path: Path, tasks: list[str], command: str = "gradkit bench") -> Path:
    data = tiny_results.to_dict()
    (info,) = data["tasks"].values()
    data["tasks"] = {t: info for t in tasks}
    runs = []
    for t in tasks:
        runs += [{**r, "task": t} for r in data["runs"]]
    data["runs"], data["command"] = runs, command
    run = tmp_path / "a" / "b" / "run"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(data))
    return run


def test_report_writes_nothing_outside_the_run_directory(tiny_results, tmp_path):
    outside = tmp_path / "elsewhere"
    run = _hostile_results(tiny_results, tmp_path, [str(outside / "x"), "../../x", ".."])
    before = _tree(tmp_path)
    assert main(["report", str(run)]) == 0
    created = _tree(tmp_path) - before
    assert created and all(name.startswith("a/b/run/") and name.count("/") == 3 for name in created), created
    assert not outside.exists()
    figures = sorted(p.name for p in run.glob("*.png"))
    assert len(figures) == 3 * 4  # every task its own, distinct file names
    report = (run / "report.md").read_text()
    assert all(f"]({name})" in report for name in figures)


def test_safe_filename_is_one_plain_component():
    for text in ("/etc/passwd", "../../x", "..", ".", "", "a/b\\c", "x\x00y", "é"):
        name = safe_filename(text)
        assert name and "/" not in name and "\\" not in name and not name.startswith(".") and "\x00" not in name


def test_report_escapes_what_it_copies(tiny_results):
    results = BenchResults.from_dict({**tiny_results.to_dict(),
                                      "command": "gradkit bench\n```\n<script>alert(1)</script>\n````x",
                                      "name": "<img src=x onerror=alert(1)>"})
    results.runs[0].contestant = "<b>x</b>|`y`"
    results.runs[0].status, results.runs[0].error = "error", "</details><script>bad()</script>"
    lines = markdown_report(results).splitlines()
    fence = lines[2]
    assert set(fence) == {"`"} and len(fence) == 5  # longer than the command's longest run of backticks
    assert lines[4] == fence  # the command stays on one line inside its block: nothing escapes the fence
    assert "`" * 5 not in lines[3] and "<script>" in lines[3]  # inert inside the code block
    outside_the_block = "\n".join(lines[:2] + lines[5:])
    assert "<" not in outside_the_block  # no HTML anywhere else: names, contestants and errors are escaped
    assert "&lt;img src=x onerror=alert(1)&gt;" in lines[0] and "&lt;/details&gt;" in outside_the_block


# -- malformed results.json: one line naming the file and the field, exit code 2 ----------------------

def _mutations():
    def drop_seed(d):
        del d["runs"][0]["seed"]

    def set_(path, value):
        def apply(d):
            target = d
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        return apply

    return {
        "runs[0].seed: missing": drop_seed,
        "runs[0].seed: expected an integer >= 0, got 'x'": set_(["runs", 0, "seed"], "x"),
        "field runs: expected a list": set_(["runs"], {"a": 1}),
        "runs[0].evals[0].val.loss: missing": lambda d: d["runs"][0]["evals"][0]["val"].pop("loss"),
        "runs[0].status: expected one of": set_(["runs", 0, "status"], "fine"),
        "runs[0].train_loss[1]: expected a number": set_(["runs", 0, "train_loss", 1], "0.5"),
        "field status: expected one of": set_(["status"], "done"),
        "field version: expected an integer": set_(["version"], True),
        "config.divergence_factor: expected a number": set_(["config", "divergence_factor"], "big"),
        "runs[0].task: 'nope' is not one of the file's tasks": set_(["runs", 0, "task"], "nope"),
        "tasks.quadratic.steps: expected an integer": set_(["tasks", "quadratic", "steps"], None),
        "runs[0].hparams.lr: expected a string, number": set_(["runs", 0, "hparams"], {"lr": {"x": 1}}),
    }


@pytest.mark.parametrize("expected", list(_mutations()))
def test_malformed_results_are_one_line_naming_file_and_field(expected, tiny_results, tmp_path, capsys):
    data = tiny_results.to_dict()
    _mutations()[expected](data)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and expected in err, err
    assert not (tmp_path / "report.md").exists()


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "{\"schema\": ", "\xff\xfe", "[1, 2]", "null"])
def test_unreadable_results_are_one_line(text, tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_bytes(text.encode("latin-1"))
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and "Traceback" not in err


# -- status: running until the end, interrupted after a kill or a signal ------------------------------

def test_saves_are_atomic_with_unique_temporary_files(tiny_results, tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    tiny_results.save(target)
    # A symlink where the old fixed temporary name was: never followed, never written through.
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "results.json.tmp").symlink_to(victim)
    tiny_results.save(target)
    assert victim.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.json.tmp", "victim"]

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        tiny_results.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.json.tmp", "victim"]


def test_a_killed_bench_is_never_complete(tmp_path):
    bench = _gradkit("bench", *SLOW_BENCH, "--out-dir", str(tmp_path), "--name", "k")
    path = tmp_path / "k" / "results.json"
    _wait_for_runs(path, 2, bench)
    bench.kill()  # SIGKILL: no handler runs
    bench.communicate(timeout=30)
    data = json.loads(path.read_text())
    assert data["status"] == "running" and 2 <= len(data["runs"]) < 160
    assert not lock_holder_alive(tmp_path / "k")
    assert load_results(path).status == "interrupted"  # the writer is gone: readers see it as interrupted
    assert main(["report", str(tmp_path / "k"), "--no-plots"]) == 0
    assert "**Status: interrupted.**" in (tmp_path / "k" / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_bench_says_interrupted_and_keeps_its_runs(sig, tmp_path):
    bench = _gradkit("bench", *SLOW_BENCH, "--out-dir", str(tmp_path), "--name", "s")
    path = tmp_path / "s" / "results.json"
    _wait_for_runs(path, 2, bench)
    bench.send_signal(sig)
    _, err = bench.communicate(timeout=60)
    assert bench.returncode == 130 and "Traceback" not in err
    data = json.loads(path.read_text())
    assert data["status"] == "interrupted" and len(data["runs"]) >= 2
    assert (tmp_path / "s" / "report.md").is_file()


def test_lock_is_exclusive_and_dies_with_its_holder(tmp_path):
    with RunLock(tmp_path):
        assert lock_holder_alive(tmp_path)
        with pytest.raises(RunBusyError, match=f"process {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert not lock_holder_alive(tmp_path)


@pytest.mark.slow
def test_two_benches_with_one_name_never_lose_a_finished_run(tmp_path):
    argv = [*SLOW_BENCH[:-4], "--seeds", "3", "--no-progress", "--no-plots", "--out-dir", str(tmp_path), "--name", "same"]
    first = _gradkit("bench", *argv)
    path = tmp_path / "same" / "results.json"
    _wait_for_runs(path, 1, first)
    first.send_signal(signal.SIGSTOP)  # mid-bench, holding the lock, for as long as the others need
    try:
        second = _gradkit("bench", *argv, "--overwrite")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2 and "being written by another gradkit bench" in err and "Traceback" not in err
        third = _gradkit("bench", *argv)
        _, err = third.communicate(timeout=120)
        assert third.returncode == 2 and "already holds a run; pass --overwrite" in err
    finally:
        first.send_signal(signal.SIGCONT)
    first.communicate(timeout=300)
    assert first.returncode == 0
    data = json.loads(path.read_text())
    assert data["status"] == "complete" and len(data["runs"]) == 4 * 3


@pytest.mark.slow
def test_runs_without_a_name_get_fresh_directories_concurrently(tmp_path):
    argv = ["bench", "--task", "quadratic:steps=20,eval_every=10", "--opt", "torch:SGD:lr=0.1", "--seeds", "2",
            "--no-progress", "--no-plots", "--out-dir", str(tmp_path)]
    benches = [_gradkit(*argv) for _ in range(2)]
    for b in benches:
        b.communicate(timeout=120)
        assert b.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quadratic", "quadratic-2"]
    for name in ("quadratic", "quadratic-2"):
        data = json.loads((tmp_path / name / "results.json").read_text())
        assert data["status"] == "complete" and len(data["runs"]) == 2
