"""One spec grammar and one build_optimizer: libraries resolve only from the documented list, never by
importing an arbitrary module; errors name what the user typed and suggest near misses."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gradkit
import gradkit.memory
from gradkit.cli import main
from gradkit.spec import ENTRY_POINT_GROUP, build_optimizer, optimizer_libraries

SRC = str(Path(gradkit.__file__).resolve().parents[1])
ZEN = "Beautiful is better than ugly"


def _params():
    return [torch.nn.Parameter(torch.zeros(3))]


def _bench(opt, cwd, *extra):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "gradkit.cli", "bench", "--task", "quadratic:steps=2", "--opt", opt, "--no-plots",
           "--no-progress", "--out-dir", str(cwd / "runs"), *extra]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_opt_this_does_not_import_the_module(tmp_path):
    result = _bench("this:X", tmp_path)
    assert result.returncode == 2, result.stderr
    assert ZEN not in result.stdout + result.stderr
    assert "unknown library 'this'" in result.stderr and "torch" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_module_in_the_working_directory_never_runs(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    result = _bench("evilmod:Evil", tmp_path)
    assert result.returncode == 2, result.stderr
    assert not marker.exists()
    assert "unknown library 'evilmod'" in result.stderr and ENTRY_POINT_GROUP in result.stderr


def test_the_documented_libraries_resolve():
    assert {"torch", "pytorch_optimizer"} <= set(optimizer_libraries())
    assert type(build_optimizer("torch:SGD:lr=0.1", _params())) is torch.optim.SGD


def test_entry_points_add_libraries(tmp_path, monkeypatch):
    (tmp_path / "extra_optlib.py").write_text("import torch\nclass Doubled(torch.optim.SGD):\n    pass\n")
    dist = tmp_path / "extra_optlib-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-optlib\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nextra = extra_optlib\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "extra" in optimizer_libraries()
    opt = build_optimizer("extra:Doubled:lr=0.5", _params())
    assert type(opt).__name__ == "Doubled" and opt.defaults["lr"] == 0.5
    with pytest.raises(ValueError, match=r"extra_optlib.Doubld is not a torch.optim.Optimizer class \(did you mean 'Doubled'"):
        build_optimizer("extra:Doubld", _params())


@pytest.mark.parametrize("spec, words", [
    ("adamww", "unknown optimizer 'adamww' (did you mean 'adamw'?)"),
    ("torch:Adamw", "torch.optim.Adamw is not a torch.optim.Optimizer class (did you mean 'AdamW'?)"),
    ("torch:_LRScheduler", "is not a torch.optim.Optimizer class"),
    ("torhc:SGD", "unknown library 'torhc' (did you mean 'torch'?)"),
    ("adamw:lr", "if 'lr' was meant as an argument, write lr=VALUE"),
    ("adamw:lrr=0.1", "unknown argument 'lrr' (did you mean 'lr'?); AdamW takes: lr, betas"),
    ("torch:SGD:lr=0.1,momentun=0.9", "unknown argument 'momentun' (did you mean 'momentum'?)"),
])
def test_near_misses_are_named_with_a_suggestion(spec, words):
    with pytest.raises(ValueError) as err:
        build_optimizer(spec, _params())
    assert words in str(err.value)


def test_a_rejected_override_is_named_as_typed_not_as_a_composed_spec():
    with pytest.raises(ValueError) as err:
        build_optimizer("adamw:weight_decay=0.1", _params(), lr=-1.0)
    message = str(err.value)
    assert message.startswith("optimizer spec 'adamw:weight_decay=0.1', lr=-1.0: ") and "lr" in message.split(": ", 1)[1]


def test_sweep_with_a_bad_value_reports_that_value(tmp_path, capsys):
    code = main(["bench", "--task", "quadratic:steps=2", "--opt", "adamw", "--sweep", "lr=abc", "--no-plots",
                 "--no-progress", "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "lr=abc" in err and "adamw:lr=abc" not in err


def test_memory_estimate_speaks_the_same_grammar():
    model = torch.nn.Linear(16, 16, bias=False)
    assert gradkit.memory.estimate(model, "frugal:density=0.5") == gradkit.memory.estimate(model, "frugal", density=0.5)
    assert gradkit.memory.estimate(model, "frugal:density=0.5") == gradkit.memory.estimate(model, ("frugal", {"density": 0.5}))
    with pytest.raises(ValueError, match="did you mean 'frugal'"):
        gradkit.memory.estimate(model, "frugl")
    with pytest.raises(TypeError, match="keyword arguments are only taken with an optimizer spec"):
        gradkit.memory.estimate(model, lambda params: torch.optim.SGD(params), lr=1.0)


def test_build_optimizer_rejects_other_types():
    with pytest.raises(TypeError, match="optimizer spec must be a string 'name:key=value,...'"):
        build_optimizer(3, _params())


@pytest.mark.parametrize("prefix, module", [("torchao", "torchao.optim"), ("bitsandbytes", "bitsandbytes.optim"),
                                            ("pytorch_optimizer", "pytorch_optimizer")])
def test_a_missing_library_is_named_with_its_install_command(monkeypatch, prefix, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if the package were absent
    with pytest.raises(ValueError, match=rf"library '{prefix}' is not installed \(pip install "
                                         rf"{prefix.replace('_', '-')}\)"):
        build_optimizer(f"{prefix}:AdamW8bit", [torch.nn.Parameter(torch.zeros(2))])


@pytest.mark.parametrize("spec", ["torchao:AdamW8bit", "torchao:AdamW4bit", "bitsandbytes:AdamW8bit"])
def test_low_bit_peers_build_and_step(spec):
    library = spec.split(":")[0]
    pytest.importorskip(f"{library}.optim", reason=f"{library} is not installed (pip install {library})")
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(64, 128))  # 8192 elements: above both libraries' minimum quantized size
    opt = build_optimizer(f"{spec}:lr=1e-2", [w])
    before = w.detach().clone()
    w.grad = torch.randn_like(w)
    opt.step()
    assert type(opt).__name__ == spec.split(":")[1] and not torch.equal(w, before)
    assert (w - before).abs().max() < 0.02  # an Adam step moves each weight by about lr
