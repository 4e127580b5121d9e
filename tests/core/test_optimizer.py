"""The torch.optim adapter: state_dict, groups, closure, dtypes, skipped params and bad input."""
import copy
import pickle

import pytest
import torch
from torch import nn

import gradkit
import gradkit.lowrank

from .helpers import data, tiny_mlp, train


def _snapshot(model, opt):
    return [p.detach().clone() for p in model.parameters()], copy.deepcopy(opt.state_dict())


def _assert_unchanged(model, opt, snapshot):
    params, sd = snapshot
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))
    now = opt.state_dict()
    assert now["state"].keys() == sd["state"].keys()
    for k in sd["state"]:
        for key, v in sd["state"][k].items():
            assert torch.equal(v, now["state"][k][key]) if torch.is_tensor(v) else v == now["state"][k][key]


@pytest.mark.parametrize("make", [lambda p: gradkit.optim.AdamW(p, lr=1e-2, amsgrad=True),
                                  lambda p: gradkit.optim.SGD(p, lr=1e-2, momentum=0.9, nesterov=True)])
def test_state_dict_round_trip_continues_bit_identically(make, tmp_path):
    a = tiny_mlp()
    opt_a = make(a.parameters())
    train(a, opt_a, 5)
    torch.save({"model": a.state_dict(), "opt": opt_a.state_dict()}, tmp_path / "ckpt.pt")
    b = tiny_mlp(seed=7)
    opt_b = make(b.parameters())
    ckpt = torch.load(tmp_path / "ckpt.pt")
    b.load_state_dict(ckpt["model"])
    opt_b.load_state_dict(ckpt["opt"])
    train(a, opt_a, 5)
    train(b, opt_b, 5)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_load_state_dict_from_another_recipe_is_rejected():
    m = tiny_mlp()
    sgd = gradkit.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    train(m, sgd, 2)
    adam = gradkit.optim.AdamW(m.parameters())
    with pytest.raises(ValueError, match="saved by SGD"):
        adam.load_state_dict(sgd.state_dict())
    lion = gradkit.optim.Lion(m.parameters())  # torch.optim state_dicts load only into Adam, AdamW and SGD
    with pytest.raises(ValueError, match="gradkit"):
        lion.load_state_dict(torch.optim.AdamW(m.parameters()).state_dict())


def test_load_state_dict_with_another_param_layout_is_rejected():
    m = tiny_mlp()
    opt = gradkit.optim.AdamW(m.parameters())
    train(m, opt, 2)
    transposed = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    with torch.no_grad():
        transposed[0].weight = nn.Parameter(torch.zeros(8, 16))  # same count, other shape
    other = gradkit.optim.AdamW(transposed.parameters())
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(opt.state_dict())
    fewer = gradkit.optim.AdamW(list(m.parameters())[:2])
    with pytest.raises(ValueError, match="params"):
        fewer.load_state_dict(opt.state_dict())
    two_groups = gradkit.optim.AdamW([{"params": m[0].parameters()}, {"params": m[2].parameters()}])
    with pytest.raises(ValueError, match="param groups"):
        two_groups.load_state_dict(opt.state_dict())


def test_failed_load_leaves_the_optimizer_as_it_was():
    m = tiny_mlp()
    opt = gradkit.optim.AdamW(m.parameters())
    train(m, opt, 2)
    before = _snapshot(m, opt)
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][0]["adam.exp_avg"] = torch.zeros(3, 3)
    with pytest.raises(ValueError):
        opt.load_state_dict(sd)
    _assert_unchanged(m, opt, before)


def test_closure_is_called_and_its_loss_returned():
    m = tiny_mlp()
    opt = gradkit.optim.SGD(m.parameters(), lr=0.1)
    x, y = data()
    calls = []

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        calls.append(loss.item())
        return loss

    first = opt.step(closure).item()
    second = opt.step(closure).item()
    assert len(calls) == 2 and second < first


def test_add_param_group_gets_defaults_and_is_stepped():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    opt = gradkit.optim.AdamW(a.parameters(), lr=1e-2)
    opt.add_param_group({"params": b.parameters(), "lr": 1e-1})
    assert opt.param_groups[1]["betas"] == (0.9, 0.999) and opt.param_groups[1]["lr"] == 1e-1
    before = b.weight.detach().clone()
    (a(torch.ones(1, 3)).sum() + b(torch.ones(1, 3)).sum()).backward()
    opt.step()
    assert not torch.equal(before, b.weight)


def test_bad_param_group_is_rejected_and_not_added():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    opt = gradkit.optim.AdamW(a.parameters())
    with pytest.raises(ValueError, match="betas"):
        opt.add_param_group({"params": b.parameters(), "betas": (0.9, 1.5)})
    assert len(opt.param_groups) == 1 and len(opt.group_states) == 1


def test_params_without_grad_are_skipped_with_state_untouched():
    m = tiny_mlp()
    opt = gradkit.optim.AdamW(m.parameters(), lr=1e-2)
    train(m, opt, 3)
    frozen = m[2].weight
    state_before = copy.deepcopy(opt.state[frozen])
    value_before = frozen.detach().clone()
    x, y = data()
    opt.zero_grad()
    nn.functional.cross_entropy(m(x), y).backward()
    frozen.grad = None
    opt.step()
    assert torch.equal(frozen, value_before)
    assert state_before["step"] == opt.state[frozen]["step"]
    assert all(torch.equal(state_before[k], v) for k, v in opt.state[frozen].items() if k != "step")
    assert opt.state[m[0].weight]["step"] == 4 and opt.state[frozen]["step"] == 3


def test_optimizer_never_writes_into_gradients():
    m = tiny_mlp()
    chain = gradkit.chain(gradkit.clip_by_value(-0.01, 0.01), gradkit.clip_by_global_norm(0.1), gradkit.scale_by_adam(),
                          gradkit.clip_by_block_rms(0.5), gradkit.add_decayed_weights(0.1), gradkit.scale_by_learning_rate())
    opt = gradkit.Optimizer(m.parameters(), chain, defaults={"lr": 1e-2})
    x, y = data()
    nn.functional.cross_entropy(m(x), y).backward()
    grads = [p.grad.clone() for p in m.parameters()]
    opt.step()
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, m.parameters()))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_params_keep_fp32_state_and_follow_the_fp32_run(dtype):
    low, ref = tiny_mlp(dtype=dtype), tiny_mlp()
    with torch.no_grad():
        for p, q in zip(low.parameters(), ref.parameters()):
            q.copy_(p.float())
    opt = gradkit.optim.AdamW(low.parameters(), lr=1e-2)
    losses = train(low, opt, 30)
    assert all(v.dtype == torch.float32 for s in opt.state.values() for k, v in s.items() if k != "step")
    assert all(p.dtype == dtype for p in low.parameters())
    ref_losses = train(ref, gradkit.optim.AdamW(ref.parameters(), lr=1e-2), 30)
    assert losses[-1] < losses[0] * 0.8
    assert abs(losses[-1] - ref_losses[-1]) < 0.05


def test_state_dtype_can_be_chosen():
    m = tiny_mlp(dtype=torch.bfloat16)
    opt = gradkit.optim.AdamW(m.parameters(), state_dtype=torch.bfloat16)
    train(m, opt, 2)
    assert opt.state[m[0].weight]["adam.exp_avg"].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="state_dtype"):
        gradkit.optim.AdamW(m.parameters(), state_dtype=torch.int32)


def test_mixed_dtypes_in_one_group():
    m = tiny_mlp()
    m[2].to(torch.bfloat16)
    opt = gradkit.optim.AdamW(m.parameters(), lr=1e-2)
    x, y = data()
    opt.zero_grad()
    nn.functional.cross_entropy(m[2](m[1](m[0](x)).bfloat16()).float(), y).backward()
    opt.step()
    assert m[2].weight.dtype == torch.bfloat16 and opt.state[m[2].weight]["adam.exp_avg"].dtype == torch.float32


def _poison(model):
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    next(model.parameters()).grad[0, 0] = float("nan")


def test_nonfinite_raise_leaves_params_and_state_untouched():
    m = tiny_mlp()
    opt = gradkit.optim.AdamW(m.parameters())
    train(m, opt, 2)
    before = _snapshot(m, opt)
    _poison(m)
    with pytest.raises(FloatingPointError, match="inf or nan"):
        opt.step()
    _assert_unchanged(m, opt, before)


def test_nonfinite_skip_counts_and_changes_nothing():
    m = tiny_mlp()
    opt = gradkit.optim.AdamW(m.parameters(), nonfinite="skip")
    train(m, opt, 2)
    before = _snapshot(m, opt)
    _poison(m)
    opt.step()
    assert opt.skipped_steps == 1
    _assert_unchanged(m, opt, before)
    assert opt.state_dict()["gradkit"]["skipped_steps"] == 1


def test_nonfinite_ignore_does_not_check():
    m = tiny_mlp()
    opt = gradkit.optim.SGD(m.parameters(), lr=0.1, nonfinite="ignore")
    _poison(m)
    opt.step()
    assert torch.isnan(next(m.parameters())).any()


def test_huge_finite_gradients_are_not_mistaken_for_nonfinite():
    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.full((4,), 3e38)  # the 2-norm overflows, the values are finite
    gradkit.optim.SGD([p], lr=1e-40).step()
    assert torch.isfinite(p).all()


@pytest.mark.parametrize("size", [3, 1 << 16])  # checked by the 2-norm call, and by a sum of its own
@pytest.mark.parametrize("values", [[float("-inf"), 0.0], [float("inf"), float("-inf")], [1e38, float("nan")]])
def test_every_kind_of_nonfinite_gradient_is_caught(values, size):
    p = nn.Parameter(torch.zeros(2))
    q = nn.Parameter(torch.zeros(size))
    opt = gradkit.optim.SGD([p, q], lr=0.1)
    p.grad, q.grad = torch.ones(2), torch.zeros(size)
    q.grad[:2] = torch.tensor(values)
    with pytest.raises(FloatingPointError, match="inf or nan"):
        opt.step()
    assert torch.equal(p.detach(), torch.zeros(2)) and torch.equal(q.detach(), torch.zeros(size))


@pytest.mark.parametrize("size", [64, 1 << 16])
@pytest.mark.parametrize("dtype,value", [(torch.float16, 60000.0), (torch.float32, 3e38)])
def test_gradients_whose_sum_or_norm_overflows_are_finite(dtype, value, size):
    p = nn.Parameter(torch.zeros(size, dtype=dtype))
    p.grad = torch.full((size,), value, dtype=dtype)  # the values are finite; their sum and 2-norm are not
    gradkit.optim.SGD([p], lr=1e-40 if dtype == torch.float32 else 1e-6).step()
    assert torch.isfinite(p).all() and (p < 0).all()


def test_sparse_gradients_raise_a_clear_type_error():
    emb = nn.Embedding(10, 3, sparse=True)
    opt = gradkit.optim.AdamW(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    before = emb.weight.detach().clone()
    with pytest.raises(TypeError, match="sparse"):
        opt.step()
    assert torch.equal(before, emb.weight) and not opt.state


@pytest.mark.parametrize("kwargs, name", [
    (dict(lr=-1e-3), "lr"), (dict(betas=(1.0, 0.9)), "betas"), (dict(betas=(0.9,)), "betas"),
    (dict(eps=0.0), "eps"), (dict(eps=-1.0), "eps"), (dict(weight_decay=-0.1), "weight_decay"),
    (dict(amsgrad="yes"), "amsgrad"), (dict(lr=float("nan")), "lr"), (dict(nonfinite="warn"), "nonfinite"),
])
def test_bad_adamw_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gradkit.optim.AdamW(tiny_mlp().parameters(), **kwargs)


@pytest.mark.parametrize("kwargs, name", [
    (dict(lr=-0.1), "lr"), (dict(momentum=-0.9), "momentum"), (dict(dampening=-1.0), "dampening"),
    (dict(nesterov=True), "nesterov"), (dict(momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
])
def test_bad_sgd_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gradkit.optim.SGD(tiny_mlp().parameters(), **kwargs)


def test_transform_must_be_a_gradient_transform():
    with pytest.raises(TypeError, match="GradientTransform"):
        gradkit.Optimizer(tiny_mlp().parameters(), lambda u: u)


def test_state_bytes_is_exact_and_broken_down():
    m = tiny_mlp()
    opt = gradkit.optim.AdamW(m.parameters(), amsgrad=True)
    assert opt.state_bytes() == 0
    train(m, opt, 1)
    n = sum(p.numel() for p in m.parameters())
    assert opt.state_bytes() == 3 * 4 * n
    assert opt.state_bytes(by="kind") == {"moment": 12 * n}
    assert opt.state_bytes(by="key") == {"adam.exp_avg": 4 * n, "adam.exp_avg_sq": 4 * n, "adam.max_exp_avg_sq": 4 * n, "step": 0}
    assert opt.state_bytes(by="param")[0] == 3 * 4 * m[0].weight.numel()
    assert gradkit.state_bytes(torch.optim.AdamW(m.parameters())) == 0
    with pytest.raises(ValueError, match="by"):
        opt.state_bytes(by="layer")


def test_named_parameters_are_accepted():
    m = tiny_mlp()
    opt = gradkit.optim.AdamW(m.named_parameters(), lr=1e-2)
    assert opt.param_groups[0]["param_names"][0] == "0.weight"
    train(m, opt, 2)
    other = gradkit.optim.AdamW(m.named_parameters(), lr=1e-2)
    other.load_state_dict(opt.state_dict())
    assert torch.equal(other.state[m[0].weight]["adam.exp_avg"], opt.state[m[0].weight]["adam.exp_avg"])


def test_loaded_group_state_is_a_copy_not_shared_with_the_source():
    m = tiny_mlp()
    transform = gradkit.chain(gradkit.transforms.autoclip(percentile=50, history_size=8), gradkit.scale_by_learning_rate())
    opt = gradkit.Optimizer(m.parameters(), transform, defaults={"lr": 0.1})
    train(m, opt, 3)
    other = gradkit.Optimizer(m.parameters(), transform, defaults={"lr": 0.1})
    other.load_state_dict(opt.state_dict())  # in memory, not through a file
    before = copy.deepcopy(other.group_states)
    train(m, opt, 3)
    assert repr(other.group_states) == repr(before)


def test_predicted_weights_restores_the_real_weights():
    m = tiny_mlp()
    opt = gradkit.optim.AdamW(m.parameters(), lr=0.1)
    train(m, opt, 2)
    real = [p.detach().clone() for p in m.parameters()]
    x, y = data()
    opt.zero_grad()
    with opt.predicted_weights(steps=2):
        assert any(not torch.equal(p, r) for p, r in zip(m.parameters(), real))
        nn.functional.cross_entropy(m(x), y).backward()
    assert all(torch.equal(p, r) for p, r in zip(m.parameters(), real))
    assert all(p.grad is not None for p in m.parameters())


def test_loaded_state_shares_no_tensor_with_the_state_dict():
    m = tiny_mlp()
    opt = gradkit.optim.AdamW(m.parameters())
    train(m, opt, 2)
    sd = opt.state_dict()
    other = gradkit.optim.AdamW(m.parameters())
    other.load_state_dict(sd)
    sd["state"][0]["adam.exp_avg"].add_(1.0)
    assert not torch.equal(other.state[m[0].weight]["adam.exp_avg"], sd["state"][0]["adam.exp_avg"])


def test_many_huge_finite_gradients_are_not_mistaken_for_nonfinite():
    params = [nn.Parameter(torch.zeros(2)) for _ in range(4)]
    for p in params:
        p.grad = torch.full((2,), 3e38)  # each norm overflows, and so would their sum
    gradkit.optim.SGD(params, lr=1e-40).step()
    assert all(torch.isfinite(p).all() for p in params)


# -- all-or-nothing steps and input checks -------------------------------------------------------------
def test_an_empty_param_is_skipped_and_the_others_step():
    empty, q = nn.Parameter(torch.empty(0, 8)), nn.Parameter(torch.randn(4, 8))
    opt = gradkit.lowrank.SubsetNorm([empty, q])
    empty.grad, q.grad = torch.zeros_like(empty), torch.randn_like(q)
    before = q.detach().clone()
    opt.step()
    assert opt.state[q]["step"] == 1 and empty not in opt.state
    assert not torch.equal(before, q)


def _adamw_with_fresh_gradients():
    """An AdamW two steps into training, with the gradients of a third batch in ``.grad``."""
    m = tiny_mlp()
    opt = gradkit.optim.AdamW(m.parameters())
    train(m, opt, 2)
    x, y = data()
    opt.zero_grad()
    nn.functional.cross_entropy(m(x), y).backward()
    return m, opt, x, y


def test_a_gradient_that_does_not_match_its_param_is_refused_before_any_write():
    m, opt, x, y = _adamw_with_fresh_gradients()
    m[2].bias.data = torch.zeros(5)  # the param changed shape after its gradient was taken
    before = _snapshot(m, opt)
    with pytest.raises(ValueError, match="does not match its param"):
        opt.step()
    params, sd = before
    assert all(torch.equal(a, b) for a, b in zip(params[:3], list(m.parameters())[:3]))
    assert all(s["step"] == 2 for s in opt.state.values())


@pytest.mark.parametrize("dtype, words", [(torch.complex64, "view_as_real"), (torch.int64, "floating-point"),
                                          (torch.bool, "floating-point")])
def test_complex_and_integer_params_are_refused_at_construction(dtype, words):
    p = torch.zeros(3, 3, dtype=dtype)
    with pytest.raises(TypeError, match=words):
        gradkit.optim.AdamW([p])
    opt = gradkit.optim.AdamW([nn.Parameter(torch.zeros(2))])
    with pytest.raises(TypeError, match=words):
        opt.add_param_group({"params": [p]})
    assert len(opt.param_groups) == 1 and len(opt.group_states) == 1


def test_meta_params_step_as_torch_adamw_does():
    m = nn.Linear(8, 4, device="meta")
    opt = gradkit.optim.AdamW(m.parameters())
    for p in m.parameters():
        p.grad = torch.empty_like(p)
    opt.step()
    ref = nn.Linear(8, 4, device="meta")
    ref_opt = torch.optim.AdamW(ref.parameters())
    for p in ref.parameters():
        p.grad = torch.empty_like(p)
    ref_opt.step()
    assert opt.state[m.weight]["step"] == 1
    assert opt.state[m.weight]["adam.exp_avg"].device.type == "meta"


def test_a_tensor_learning_rate_is_read_as_its_value():
    a, b = tiny_mlp(), tiny_mlp()
    train(a, gradkit.optim.AdamW(a.parameters(), lr=torch.tensor(0.01)), 3)
    train(b, gradkit.optim.AdamW(b.parameters(), lr=0.01), 3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("key, value, error", [("lr", "0.1", TypeError), ("lr", -1.0, ValueError),
                                               ("betas", (0.9, True), TypeError), ("eps", float("nan"), ValueError)])
def test_a_group_changed_between_steps_is_checked_before_the_step(key, value, error):
    m, opt, x, y = _adamw_with_fresh_gradients()
    opt.param_groups[0][key] = value
    before = _snapshot(m, opt)
    with pytest.raises(error, match=key):
        opt.step()
    _assert_unchanged(m, opt, before)


def _fail_in_adam(opt):
    adam = next(t for t in opt.transform.transforms if type(t).__name__ == "ScaleByAdam")
    original = adam.update

    def update(*args, **kwargs):
        original(*args, **kwargs)
        raise MemoryError("injected")

    adam.update = update
    return lambda: setattr(adam, "update", original)


def test_a_transactional_step_that_fails_inside_the_chain_restores_everything():
    m, twin = tiny_mlp(), tiny_mlp()
    opt = gradkit.optim.AdamW(m.parameters())
    opt.transactional = True  # every recipe takes it as an attribute; gradkit.Optimizer also as an argument
    twin_opt = gradkit.optim.AdamW(twin.parameters())
    train(m, opt, 2)
    train(twin, twin_opt, 2)
    x, y = data()
    opt.zero_grad()
    nn.functional.cross_entropy(m(x), y).backward()
    before = _snapshot(m, opt)
    restore = _fail_in_adam(opt)
    with pytest.raises(MemoryError):
        opt.step()
    restore()
    _assert_unchanged(m, opt, before)
    opt.step()
    twin_opt.zero_grad()
    nn.functional.cross_entropy(twin(x), y).backward()
    twin_opt.step()
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), twin.parameters()))


def test_a_failed_step_without_transactions_keeps_params_and_counters_and_says_so():
    m, opt, x, y = _adamw_with_fresh_gradients()
    params = [p.detach().clone() for p in m.parameters()]
    restore = _fail_in_adam(opt)
    with pytest.raises(MemoryError) as info:
        opt.step()
    restore()
    assert all(torch.equal(a, b) for a, b in zip(params, m.parameters()))
    assert all(s["step"] == 2 for s in opt.state.values())
    assert any("transactional=True" in note for note in info.value.__notes__)
    with pytest.raises(ValueError, match="transactional"):
        opt.transactional = "yes"


@pytest.mark.parametrize("kwargs", [dict(lr="0.001"), dict(lr=True), dict(eps="1e-8"), dict(betas=("0.9", "0.999")),
                                    dict(weight_decay=False)])
def test_text_and_bools_are_not_numbers(kwargs):
    (arg,) = kwargs
    with pytest.raises(TypeError, match=arg):
        gradkit.optim.AdamW(tiny_mlp().parameters(), **kwargs)


def test_muon_names_its_adamw_settings():
    with pytest.raises(ValueError, match="adamw_lr"):
        gradkit.optim.Muon(tiny_mlp().parameters(), adamw_lr=-1)
    with pytest.raises(TypeError, match="adamw_betas"):
        gradkit.optim.Muon(tiny_mlp().parameters(), adamw_betas=("0.9", "0.95"))


@pytest.mark.parametrize("recipe", ["GaLore", "Fira", "SVDFree", "SNSM"])
def test_rank_zero_is_refused(recipe):
    with pytest.raises(ValueError, match="rank"):
        getattr(gradkit.lowrank, recipe)(tiny_mlp().parameters(), rank=0)


@pytest.mark.slow  # compiles the fused program (seconds)
def test_a_fused_transactional_step_restores_what_the_program_wrote():
    m = tiny_mlp()
    opt = gradkit.optim.AdamW(m.parameters(), fused=True)
    opt.transactional = True
    train(m, opt, 1)
    x, y = data()
    opt.zero_grad()
    nn.functional.cross_entropy(m(x), y).backward()
    before = _snapshot(m, opt)
    program = opt._fused_step

    def run_then_fail(groups, check=None):
        program(groups, check=check)  # params and state are written in place by the compiled program
        raise KeyboardInterrupt

    opt._fused_step = run_then_fail
    with pytest.raises(KeyboardInterrupt):
        opt.step()
    opt._fused_step = program
    _assert_unchanged(m, opt, before)


def test_transactional_survives_deepcopy_and_pickle():
    opt = gradkit.optim.SGD(tiny_mlp().parameters(), lr=0.1)
    opt.transactional = True
    assert copy.deepcopy(opt).transactional and pickle.loads(pickle.dumps(opt)).transactional
