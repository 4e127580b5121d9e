"""One registry mechanism for every kind of named thing: lookups, suggestions, registration rules."""
import pytest

from gradkit import registry
from gradkit.registry import KINDS, REGISTRIES, Registry, UnknownNameError, list_entries


def test_every_kind_is_one_registry_with_its_built_in_entries():
    assert KINDS == ("optimizer", "transform", "aggregator", "attribution", "projector", "task")
    expected = {"optimizer": "adamw", "transform": "scale_by_adam", "aggregator": "upgrad", "attribution": "ig",
                "projector": "svd", "task": "digits-mlp"}
    for kind, name in expected.items():
        assert isinstance(REGISTRIES[kind], Registry)
        assert name in REGISTRIES[kind] and name in [e.name for e in list_entries(kind)]
        assert REGISTRIES[kind].entry(name).summary


def test_the_subpackages_expose_the_same_registries():
    from gradkit import combine, explain, lowrank
    from gradkit.bench.tasks import get_task

    assert combine.AGGREGATORS is registry.AGGREGATORS
    assert explain.METHODS is registry.ATTRIBUTIONS
    assert lowrank.PROJECTORS is registry.PROJECTORS
    assert get_task("quadratic") is registry.TASKS["quadratic"]


@pytest.mark.parametrize("kind, typo, nearest", [
    ("optimizer", "adamww", "adamw"), ("transform", "scale_by_adm", "scale_by_adam"), ("aggregator", "pcgrd", "pcgrad"),
    ("attribution", "smoothgrd", "smoothgrad"), ("projector", "svdd", "svd"), ("task", "digits-mpl", "digits-mlp"),
])
def test_an_unknown_name_lists_the_known_ones_and_suggests_the_nearest(kind, typo, nearest):
    with pytest.raises(UnknownNameError) as err:
        REGISTRIES[kind].get(typo)
    message = str(err.value)
    assert f"unknown {REGISTRIES[kind].kind} {typo!r} (did you mean {nearest!r}?)" in message
    assert nearest in message.split(";", 1)[1]
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)


def test_no_suggestion_when_nothing_is_close():
    with pytest.raises(UnknownNameError) as err:
        registry.OPTIMIZERS.get("zzzzzz")
    assert "did you mean" not in str(err.value)


def test_registration_rules():
    reg = Registry("widget")
    obj = object()
    assert reg.register("w-1", obj, summary="one") is obj
    assert reg.register("w-1", obj, summary="one") is obj  # the same object again: a re-imported module
    with pytest.raises(ValueError, match="'w-1' is already registered"):
        reg.register("w-1", object())
    for bad in ("Upper", "with space", "", "-lead", 3):
        with pytest.raises(ValueError, match="widget names are lowercase"):
            reg.register(bad, object())

    @reg.register("doc")
    def documented():
        """First line becomes the summary.

        Not this one."""

    assert reg.entry("doc").summary == "First line becomes the summary."
    assert reg["DOC"] is documented and "doc" in reg and "nope" not in reg and len(reg) == 2
    assert list(reg) == ["doc", "w-1"]


def test_list_entries_rejects_unknown_kinds_with_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'optimizer'"):
        list_entries("optimizers")


def test_a_new_module_in_a_provider_package_is_found_without_an_import_line(tmp_path, monkeypatch):
    """What 'Adding an optimizer' in docs/ARCHITECTURE.md promises: a file that registers is enough."""
    package = tmp_path / "extra_optimizers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "newopt.py").write_text(
        "from gradkit.registry import register_optimizer\n"
        "from gradkit.optim import SGD\n"
        "@register_optimizer('newopt-test', summary='s', reference='r')\n"
        "class NewOpt(SGD):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("optimizer", ("extra_optimizers.*",))
    monkeypatch.setattr(registry, "OPTIMIZERS", reg)
    monkeypatch.setattr(registry, "register_optimizer",
                        lambda name, *, summary, reference: reg.register(name, summary=summary, reference=reference))
    assert reg.get("newopt-test").__name__ == "NewOpt"


def test_gradkit_list_prints_every_kind_and_suggests_near_misses(capsys):
    from gradkit.cli import main

    assert main(["list", "--short"]) == 0
    out = capsys.readouterr().out
    for header, name in [("optimizers:", "adamw"), ("aggregators:", "upgrad"), ("attribution methods:", "ig"),
                         ("projectors:", "svd"), ("tasks:", "digits-mlp"), ("transforms:", "scale_by_adam")]:
        assert header in out and f"\n  {name} " in out
    assert main(["list", "task"]) == 0 and "optimizers:" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["list", "optimizers"])
    assert "did you mean 'optimizer'?" in capsys.readouterr().err
