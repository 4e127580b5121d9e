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
