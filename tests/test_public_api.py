"""The top-level namespace: core types and every transform's functional name, nothing internal or doubled."""
import gradkit
import gradkit.transforms
from gradkit.core import GradientTransform


def _functional_transforms():
    return {n for n in gradkit.transforms.__all__
            if n.islower() and isinstance(getattr(gradkit.transforms, n), type)
            and issubclass(getattr(gradkit.transforms, n), GradientTransform)}


def test_every_functional_transform_is_at_the_top_level():
    missing = _functional_transforms() - set(gradkit.__all__)
    assert not missing, f"add these to gradkit/__init__.py: {sorted(missing)}"
    for name in _functional_transforms():
        assert getattr(gradkit, name) is getattr(gradkit.transforms, name)


def test_the_top_level_has_no_internals_or_class_duplicates():
    exported = set(gradkit.__all__)
    assert {"Optimizer", "chain", "GradientTransform", "hp", "state_bytes", "optim", "transforms"} <= exported
    assert not exported & {"radial_modes", "NOT_PROJECTED", "CHANNEL", "ScaleByAdam", "Trace", "global_norm"}
    objects = [getattr(gradkit, n) for n in exported]
    assert len({id(o) for o in objects}) == len(objects), "one name per object"
    assert all(hasattr(gradkit, n) for n in exported)


def test_internals_stay_importable_from_their_module():
    from gradkit.transforms.radial import NOT_PROJECTED, radial_modes  # noqa: F401
    assert gradkit.transforms.ScaleByAdam is gradkit.scale_by_adam


def test_import_and_help_do_not_import_torch():
    """``import gradkit`` and ``gradkit --help`` load nothing heavy: every name and subpackage loads on first use."""
    import subprocess
    import sys

    probe = ("import sys, gradkit, gradkit.cli, contextlib, io\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    try:\n"
             "        gradkit.cli.main(['--help'])\n"
             "    except SystemExit:\n"
             "        pass\n"
             "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_lazy_names_resolve():
    import gradkit

    assert gradkit.Optimizer is gradkit.core.Optimizer
    assert callable(gradkit.scale_by_adam) and callable(gradkit.param_groups)
    assert gradkit.memory.estimate is not None
