"""gradkit.param_groups and name routing: routed by module kind, or a warning naming what was not routed."""
import doctest
import warnings

import pytest
import torch
from torch import nn

import gradkit
import gradkit.grouping
from gradkit.grouping import RoutingWarning
from gradkit.lowrank import FRUGAL, GaLore


class TinyLM(nn.Module):
    """Embedding, two hidden linears, a norm, an untied head named ``lm_head``."""

    def __init__(self, tied=False):
        super().__init__()
        self.wte = nn.Embedding(16, 8)
        self.up = nn.Linear(8, 12)
        self.down = nn.Linear(12, 8, bias=False)
        self.norm = nn.LayerNorm(8)
        self.lm_head = nn.Linear(8, 16, bias=False)
        if tied:
            self.lm_head.weight = self.wte.weight

    def forward(self, ids):
        return self.lm_head(self.norm(self.down(torch.relu(self.up(self.wte(ids))))))


def _kinds(groups):
    return {n: g["kind"] for g in groups for n, _ in g["params"]}


def _flags(opt, key):
    return {n: g[key] for g in opt.param_groups for n in g["param_names"]}


def test_docstring_example_runs():
    result = doctest.testmod(gradkit.grouping, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0


def test_kinds_follow_module_types_with_names_and_no_warning():
    model = TinyLM()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        groups = gradkit.param_groups(model)
    assert _kinds(groups) == {"wte.weight": "embedding", "up.weight": "hidden", "down.weight": "hidden",
                              "lm_head.weight": "head", "up.bias": "vector", "norm.weight": "vector",
                              "norm.bias": "vector"}
    assert [g["kind"] for g in groups] == ["hidden", "embedding", "head", "vector"]
    named = dict(model.named_parameters())
    assert all(named[n] is p for g in groups for n, p in g["params"])


def test_tied_head_is_the_embedding_and_appears_once():
    model = TinyLM(tied=True)
    groups = gradkit.param_groups(model, head="lm_head")
    assert _kinds(groups)["wte.weight"] == "embedding"
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_head_found_in_a_sequential_and_conv_is_hidden():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Sequential(nn.Linear(36, 5), nn.ReLU()),
                          nn.LayerNorm(5), nn.Dropout())
    assert _kinds(gradkit.param_groups(model)) == {"0.weight": "hidden", "0.bias": "vector", "3.0.weight": "head",
                                                   "3.0.bias": "vector", "4.weight": "vector", "4.bias": "vector"}


def test_frozen_params_are_left_out_and_settings_are_applied():
    model = TinyLM()
    model.wte.weight.requires_grad_(False)
    groups = gradkit.param_groups(model, settings={"vector": {"weight_decay": 0.0}, "hidden": {"lr": 0.5}})
    assert "wte.weight" not in _kinds(groups)
    by_kind = {g["kind"]: g for g in groups}
    assert by_kind["vector"]["weight_decay"] == 0.0 and by_kind["hidden"]["lr"] == 0.5
    assert "weight_decay" not in by_kind["head"]


class WithBareMatrix(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(6, 8))
        self.body = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x + self.pos))


def test_matrix_of_unknown_role_is_named_in_a_warning_and_kept_out_of_hidden():
    with pytest.warns(RoutingWarning, match=r"pos \(6, 8\) in WithBareMatrix"):
        groups = gradkit.param_groups(WithBareMatrix())
    assert _kinds(groups)["pos"] == "other" and _kinds(groups)["head.weight"] == "head"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        groups = gradkit.param_groups(WithBareMatrix(), kinds={"pos": "embedding"})
    assert _kinds(groups)["pos"] == "embedding"


class NoHeadName(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        return self.b(self.a(x))


def test_missing_head_is_warned_about_unless_named_or_declared_absent():
    with pytest.warns(RoutingWarning, match="no output head"):
        groups = gradkit.param_groups(NoHeadName())
    assert _kinds(groups)["b.weight"] == "hidden"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _kinds(gradkit.param_groups(NoHeadName(), head="b"))["b.weight"] == "head"
        model = NoHeadName()
        assert _kinds(gradkit.param_groups(model, head=model.b))["b.weight"] == "head"
        assert _kinds(gradkit.param_groups(NoHeadName(), head=None))["b.weight"] == "hidden"
        assert _kinds(gradkit.param_groups(NoHeadName(), kinds={"b.*": "head"}))["b.weight"] == "head"


@pytest.mark.parametrize("kwargs, match", [
    (dict(kinds={"up.*": "matrix"}), r"kinds\['up.\*'\] must be one of"),
    (dict(settings={"bias": {}}), "settings keys must be kinds"),
    (dict(settings={"vector": {"params": []}}), r"settings\['vector'\]"),
    (dict(head="nope"), "head must name a submodule"),
    (dict(head=nn.Linear(8, 16)), "head must be a submodule of model"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gradkit.param_groups(TinyLM(), **kwargs)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        gradkit.param_groups(list(TinyLM().parameters()))


def test_a_group_with_an_unknown_kind_is_rejected():
    model = TinyLM()
    with pytest.raises(ValueError, match="'kind' must be one of"):
        gradkit.optim.Muon([{"params": list(model.parameters()), "kind": "matrix"}])
    with pytest.raises(ValueError, match="'kind' must be one of"):
        FRUGAL([{"params": list(model.parameters()), "kind": "matrix"}])


# -- Muon ------------------------------------------------------------------------------------------
def test_muon_routes_by_kind_without_any_name_pattern():
    opt = gradkit.optim.Muon(gradkit.param_groups(TinyLM()))
    assert {n for n, muon in _flags(opt, "use_muon").items() if muon} == {"up.weight", "down.weight"}


def test_muon_name_patterns_apply_on_top_of_kinds_and_count_matches_in_any_kind():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "wte*" matches a parameter of the embedding group: no warning
        opt = gradkit.optim.Muon(gradkit.param_groups(TinyLM()), adamw=["down.*", "wte*"])
    assert {n for n, muon in _flags(opt, "use_muon").items() if muon} == {"up.weight"}


def test_muon_name_patterns_without_names_raise_and_point_to_param_groups():
    model = TinyLM()
    with pytest.raises(ValueError, match=r"need parameter names.*gradkit.param_groups\(model\)"):
        gradkit.optim.Muon(model.parameters(), adamw=["wte*", "lm_head*"])
    hf_style = [{"params": [model.up.weight, model.wte.weight], "weight_decay": 0.1},
                {"params": [model.up.bias], "weight_decay": 0.0}]
    with pytest.raises(ValueError, match="need parameter names"):
        gradkit.optim.Muon(hf_style, adamw="wte*")


def test_muon_pattern_matching_nothing_is_warned_about():
    with pytest.warns(RoutingWarning, match=r"\['embed\*'\] matched no parameter name"):
        gradkit.optim.Muon(TinyLM().named_parameters(), adamw=["embed*", "wte*"])


# -- FRUGAL / GaLore -----------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda p: FRUGAL(p, density=0.5), lambda p: GaLore(p, rank=2)],
                         ids=["frugal", "galore"])
def test_lowrank_projects_only_hidden_matrices_from_param_groups(make):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt = make(gradkit.param_groups(TinyLM()))
    assert {n for n, projected in _flags(opt, "project").items() if projected} == {"up.weight", "down.weight"}


def test_frugal_default_rule_without_names_warns_naming_the_projected_matrices():
    model = TinyLM()
    with pytest.warns(RoutingWarning, match=r"4 matrices came without names.*group 0 param 0 \(16, 8\)"):
        opt = FRUGAL(model.parameters(), density=0.5)
    projected = [p for g in opt.param_groups if g["project"] for p in g["params"]]
    assert any(p is model.wte.weight for p in projected)  # what the warning says happened


def test_frugal_under_hf_style_unnamed_groups_warns():
    model = TinyLM()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    with pytest.warns(RoutingWarning, match="came without names"):
        FRUGAL([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}])


def test_frugal_explicit_regex_needs_names_and_must_match_something():
    model = TinyLM()
    with pytest.raises(ValueError, match=r"full_state='wte' is a name rule.*param_groups"):
        FRUGAL(model.parameters(), full_state="wte")
    with pytest.warns(RoutingWarning, match="full_state='embed' matched no parameter name"):
        FRUGAL(model.named_parameters(), full_state="embed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt = FRUGAL(model.named_parameters(), full_state="wte|lm_head")
        FRUGAL(model.parameters(), full_state=lambda name, p: p.shape[0] == 16)  # a predicate decides unnamed
    assert {n for n, projected in _flags(opt, "project").items() if projected} == {"up.weight", "down.weight"}


def test_param_groups_survive_a_state_dict_round_trip():
    torch.manual_seed(0)
    model = TinyLM()
    ids = torch.randint(0, 16, (4, 5))
    opt = gradkit.optim.Muon(gradkit.param_groups(model), adamw_lr=1e-2, ns_dtype=torch.float32)
    model(ids).square().mean().backward()
    opt.step()
    clone = TinyLM()
    clone.load_state_dict(model.state_dict())
    opt2 = gradkit.optim.Muon(gradkit.param_groups(clone), adamw_lr=1e-2, ns_dtype=torch.float32)
    opt2.load_state_dict(opt.state_dict())
    for m, o in ((model, opt), (clone, opt2)):
        o.zero_grad()
        m(ids).square().mean().backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), clone.parameters()))
    assert [g["kind"] for g in opt2.param_groups] == [g["kind"] for g in opt.param_groups]
