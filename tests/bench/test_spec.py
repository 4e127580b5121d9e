import pytest
from hypothesis import given, strategies as st
import torch

from gradkit.bench.spec import Spec, format_value, parse_spec, parse_sweep, parse_value, resolve_optimizer


@pytest.mark.parametrize("text, expected", [
    ("3", 3), ("-2", -2), ("1e-3", 1e-3), ("0.5", 0.5), (".5", 0.5), ("1.", 1.0), ("true", True), ("False", False),
    ("none", None), ("0.9/0.999", (0.9, 0.999)), ("1/2/3", (1, 2, 3)), ("sign", "sign"), ("match-rms", "match-rms"),
])
def test_values_parse_to_python_types(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_gradkit_spec_with_arguments():
    spec = parse_spec("adamw:lr=1e-3,weight_decay=0.1,betas=0.9/0.95,foreach=false")
    assert spec == Spec("adamw", {"lr": 1e-3, "weight_decay": 0.1, "betas": (0.9, 0.95), "foreach": False})
    assert spec.library is None and parse_spec("frugal").kwargs == {}


def test_library_prefix_spec():
    assert parse_spec("torch:AdamW") == Spec("AdamW", {}, "torch")
    spec = parse_spec("pytorch_optimizer:Adan:lr=0.01")
    assert (spec.library, spec.name, spec.kwargs) == ("pytorch_optimizer", "Adan", {"lr": 0.01})


def test_spec_string_round_trip():
    for text in ["adamw:lr=0.001,betas=0.9/0.95", "torch:SGD:lr=0.1,momentum=0.9,nesterov=true", "lion"]:
        assert str(parse_spec(text)) == text
        assert parse_spec(str(parse_spec(text))) == parse_spec(text)
    assert parse_value(format_value(float("inf"))) == float("inf")


@pytest.mark.parametrize("text, bad_part", [
    ("adamw:lr=", "empty value"),
    ("adamw:lr=1e-3x", "'1e-3x'"),          # unparsable value, named
    ("adamw:1lr=3", "'1lr'"),               # bad key
    ("adamw:lr=1,lr=2", "'lr' is given twice"),
    ("adamw:", "nothing after ':'"),
    ("torch:AdamW:lr=1:x=2", "too many ':'"),
    ("adam w", "without spaces"),
    ("", "without spaces"),
    ("adamw:betas=0.9/", "empty element"),
    ("9adam", "'9adam'"),
])
def test_bad_specs_name_the_bad_part(text, bad_part):
    with pytest.raises(ValueError, match="spec") as err:
        parse_spec(text)
    assert bad_part in str(err.value)


def test_spec_must_be_a_string():
    with pytest.raises(TypeError, match="spec must be a string"):
        parse_spec(3)


def test_sweep_axes():
    assert parse_sweep(["lr=3e-4,1e-3,3e-3", "betas=0.9/0.99,0.95/0.99"]) == {
        "lr": [3e-4, 1e-3, 3e-3], "betas": [(0.9, 0.99), (0.95, 0.99)]}
    for bad, part in [("lr", "key=value1"), ("lr=1,1x", "'1x'"), ("lr=1,1", "repeated"), ("2x=1", "'2x'")]:
        with pytest.raises(ValueError) as err:
            parse_sweep([bad])
        assert part in str(err.value)
    with pytest.raises(ValueError, match="swept twice"):
        parse_sweep(["lr=1", "lr=2"])


def test_resolve_library_optimizers():
    assert resolve_optimizer(parse_spec("torch:AdamW")) is torch.optim.AdamW
    with pytest.raises(ValueError, match="unknown library 'no_such_lib'"):
        resolve_optimizer(parse_spec("no_such_lib:Adam"))
    with pytest.raises(ValueError, match="not a torch.optim.Optimizer class"):
        resolve_optimizer(parse_spec("torch:lr_scheduler"))
    # "name:word" reads as library:name, so a forgotten "=value" gets a hint naming it
    with pytest.raises(ValueError, match="if 'lr' was meant as an argument, write lr=VALUE"):
        resolve_optimizer(parse_spec("adamw:lr"))
    with pytest.raises(ValueError, match="unknown optimizer 'no-such-opt'"):
        resolve_optimizer(parse_spec("no-such-opt"))


def test_resolve_pytorch_optimizer_baseline():
    po = pytest.importorskip("pytorch_optimizer", reason="pytorch-optimizer baselines need the package")
    assert resolve_optimizer(parse_spec("pytorch_optimizer:Adan")) is po.Adan


_scalars = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=True), st.booleans(), st.none(),
                     st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-]{0,8}", fullmatch=True).filter(lambda w: w.lower() not in ("true", "false", "none", "inf", "nan")))


@given(st.one_of(_scalars, st.tuples(_scalars, _scalars)))
def test_format_then_parse_is_identity(value):
    assert parse_value(format_value(value)) == value
