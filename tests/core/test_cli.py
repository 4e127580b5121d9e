import pytest

from gradkit.cli import main
from gradkit.registry import list_entries


def test_list_shows_every_optimizer_with_its_reference(capsys):
    assert main(["list", "optimizer"]) == 0
    out = capsys.readouterr().out
    for entry in list_entries("optimizer"):
        assert entry.name in out and entry.reference.split(",")[0] in out


def test_list_short_and_transforms(capsys):
    assert main(["list", "--short"]) == 0
    out = capsys.readouterr().out
    assert "scale_by_adam" in out and "ref:" not in out


def test_list_marks_what_has_a_fused_form(capsys):
    assert main(["list", "--short"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    for name in ("adamw", "lion", "adamp", "scale_by_adam", "trace", "clip_by_global_norm", "project_radial"):
        assert lines[name].endswith("[fused]"), name
    for name in ("muon", "frugal", "autoclip"):
        assert not lines[name].endswith("[fused]"), name


def test_unknown_subcommand_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as err:
        main(["frobnicate"])
    assert err.value.code == 2 and "invalid choice" in capsys.readouterr().err


# -- a user's mistake: one line naming what is wrong, exit code 2, checked before any training -------

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
README = Path(__file__).resolve().parents[2] / "README.md"

# Runs each argv through gradkit.cli.main in one child interpreter (what the `gradkit` script calls);
# an exception that escapes main() ends the child with a traceback and fails the test.
_CHILD = """
import contextlib, io, json, sys
from gradkit.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def _run_cli(argvs, cwd, timeout=300):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(argvs)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_user_mistakes_are_one_line_and_exit_code_2(tmp_path):
    shutil.copy(README, tmp_path / "README.md")
    (tmp_path / "bad.jsonl").write_text('{"step": 0, "top_eigenvalues": "x"}\n{"step": 1, "layers": 5}\n')
    quick = ["--task", "quadratic:steps=3,eval_every=3", "--no-progress", "--no-plots"]
    cases = [
        (["bench", "--opt", "adamw", "--opt", "adam", "--out-dir", "README.md"],
         "--out-dir 'README.md' is a file, not a directory"),
        (["bench", "--out-dir", "/sys/kernel/nope"], "--out-dir '/sys/kernel/nope' is not a writable directory"),
        (["explain", "--out", "README.md/x"], "--out 'README.md/x' is not a writable directory"),
        (["explain", "--checkpoint", "README.md"], "--checkpoint README.md: not a file written by torch.save"),
        (["inspect", "README.md"], "README.md, line 1: not an Inspector log"),
        (["inspect", "bad.jsonl", "--out", "plots"], "bad.jsonl: the records' 'sharpness' entries are not what an Inspector"),
        (["bench", *quick, "--opt", "adamw", "--sweep", "lr=abc", "--out-dir", "runs"],
         "optimizer spec 'adamw', lr=abc: lr must be a number, got str 'abc'"),
        (["bench", *quick, "--opt", "sgd", "--out-dir", "runs", "--name", "mine"], None),
        (["bench", *quick, "--opt", "adam", "--out-dir", "runs", "--name", "mine"],
         "--name 'mine': 'runs/mine' already holds a run; pass --overwrite"),
        (["bench", *quick, "--opt", "sgd", "--out-dir", "runs", "--name", "../up"], "--name must be a plain directory name"),
        (["bench", *quick, "--opt", "sgd", "--out-dir", "runs", "--overwrite"], "--overwrite replaces the run named by --name"),
        (["bench", *quick, "--opt", "sgd", "--out-dir", "runs", "--device", "foo"], "--device must be one of cpu, cuda"),
        (["bench", *quick, "--opt", "sgd", "--out-dir", "runs", "--device", "meta"], "--device must be one of cpu, cuda"),
        (["report", "README.md"], "README.md: not valid JSON"),
    ]
    results = _run_cli([argv for argv, _ in cases], tmp_path)
    for (argv, expected), (code, err) in zip(cases, results):
        if expected is None:
            assert code == 0, (argv, err)
            continue
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and expected in lines[0] and "Traceback" not in err, (argv, err)
    # Nothing was trained for a refused command: only the one accepted run exists.
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mine"]
    assert json.loads((tmp_path / "runs" / "mine" / "results.json").read_text())["config"]["optimizers"] == ["sgd"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "bad.jsonl", "plots", "runs"]


def test_overwrite_replaces_a_named_run(tmp_path):
    quick = ["bench", "--task", "quadratic:steps=3,eval_every=3", "--no-progress", "--no-plots", "--out-dir", str(tmp_path),
             "--name", "r"]
    assert main([*quick, "--opt", "sgd"]) == 0
    assert main([*quick, "--opt", "adam", "--overwrite"]) == 0
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["config"]["optimizers"] == ["adam"] and data["status"] == "complete"
    assert "--name r" in data["command"] and "--overwrite" not in data["command"]


def test_help_covers_every_command_and_option_with_its_default():
    from gradkit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"bench", "report", "list", "explain", "inspect"}
    helps = {c.dest: c.help for c in sub._choices_actions}
    for name, command in sub.choices.items():
        assert helps.get(name) and command.description, name
        for action in command._actions:
            if action.dest == "help":
                continue
            assert action.help, (name, action.dest)
            if action.option_strings and action.default not in (None, False):
                assert "default" in action.help, (name, action.dest, action.help)
    bench = sub.choices["bench"].format_help()
    assert "--overwrite" in bench and "fresh directory" in bench


def test_help_summaries_are_the_commands_own():
    from gradkit.cli import COMMANDS, build_parser

    full = build_parser()
    sub = next(a for a in full._actions if a.dest == "command")
    assert {c.dest: c.help for c in sub._choices_actions} == {name: summary for name, (_, summary) in COMMANDS.items()}
    assert [c.dest for c in sub._choices_actions] == list(COMMANDS)
    for name in COMMANDS:  # running one command loads only its own module's parsers
        light = build_parser(name)
        light_sub = next(a for a in light._actions if a.dest == "command")
        assert light_sub.choices[name].format_help() == sub.choices[name].format_help()


def test_help_imports_no_engine():
    code = ("import sys, contextlib, io\nfrom gradkit.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('gradkit.bench', 'gradkit.listing', 'gradkit.explain', 'gradkit.inspect', "
            "'matplotlib', 'sklearn', 'gradkit.lowrank', 'gradkit.combine', 'gradkit.memory') if m in sys.modules]\n"
            "print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", (done.stdout, done.stderr)


def test_subpackages_load_lazily_on_first_use():
    code = ("import sys, torch, gradkit\n"
            "names = ('memory', 'lowrank', 'combine', 'inspect', 'explain')\n"
            "print([n for n in names if 'gradkit.' + n in sys.modules])\n"
            "print(gradkit.memory.estimate(torch.nn.Linear(8, 8), 'adamw'))\n"
            "print(all(hasattr(gradkit, n) and n in dir(gradkit) for n in names))\n"
            "print(callable(gradkit.combine.backward), callable(gradkit.explain.saliency), "
            "gradkit.inspect.Inspector.__name__, gradkit.lowrank.__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", str(2 * 4 * 72), "True", "True True Inspector gradkit.lowrank"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import gradkit

        gradkit.nope
