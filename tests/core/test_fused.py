"""The fused step (``fused=True``) against the unfused multi-tensor step, which is the reference.

Agreement is measured per tensor as ||x_fused - x_ref|| / ||x_ref|| <= 1e-6 for every param and
state tensor after 100 steps with a learning-rate schedule, for float32 params and for bfloat16
params with float32 state (in one group).
"""
from __future__ import annotations

import copy
import inspect

import pytest
import torch

import gradkit
import gradkit.optim as optim
from gradkit.registry import get_optimizer, list_entries

try:
    from torch._dynamo.utils import counters
except ImportError:  # pragma: no cover - torch without Dynamo
    counters = None

SHAPES = [(24, 16), (16,), (4, 3, 3, 3)]
STEPS = 100

# Every fusable optimizer with each of its flags flipped at least once.
CASES = {
    "adamw": (optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
    "adam-amsgrad-maximize-l2": (optim.Adam, dict(lr=1e-2, weight_decay=0.1, amsgrad=True, maximize=True)),
    "sgd-momentum": (optim.SGD, dict(lr=1e-2, momentum=0.9, dampening=0.1, weight_decay=1e-3)),
    "sgd-nesterov": (optim.SGD, dict(lr=1e-2, momentum=0.9, nesterov=True)),
    "sgd-plain": (optim.SGD, dict(lr=1e-2)),
    "adamp": (optim.AdamP, dict(lr=1e-2, weight_decay=0.1)),
    "adamp-nesterov": (optim.AdamP, dict(lr=1e-2, weight_decay=0.1, nesterov=True)),
    "sgdp": (optim.SGDP, dict(lr=1e-2, momentum=0.9, weight_decay=0.1)),
    "sgdp-nesterov": (optim.SGDP, dict(lr=1e-2, momentum=0.9, nesterov=True, weight_decay=0.1)),
    "sgdp-paper": (optim.SGDP, dict(lr=1e-2, momentum=0.9, project_momentum=False)),
    "adabelief": (optim.AdaBelief, dict(lr=1e-2, weight_decay=0.1)),
    "adabelief-amsgrad-coupled-unrectified": (optim.AdaBelief, dict(lr=1e-2, weight_decay=0.1, amsgrad=True,
                                                                    weight_decouple=False, rectify=False)),
    "adabelief-fixed-decay-no-sgd": (optim.AdaBelief, dict(lr=1e-2, weight_decay=0.1, fixed_decay=True,
                                                           degenerated_to_sgd=False)),
    "adan": (optim.Adan, dict(lr=1e-2, weight_decay=0.02)),
    "adan-no-prox": (optim.Adan, dict(lr=1e-2, weight_decay=0.02, no_prox=True)),
    "ademamix": (optim.AdEMAMix, dict(lr=1e-2, weight_decay=0.1)),
    "ademamix-warmups": (optim.AdEMAMix, dict(lr=1e-2, beta3_warmup=50, alpha_warmup=50)),
    "ademamix-no-fast-ema": (optim.AdEMAMix, dict(lr=1e-2, betas=(0.0, 0.999, 0.9999))),
    "lion": (optim.Lion, dict(lr=1e-3, weight_decay=0.1)),
    "diffgrad": (optim.DiffGrad, dict(lr=1e-2, weight_decay=0.1)),
    "diffgrad-decoupled": (optim.DiffGrad, dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)),
    "exadam": (optim.EXAdam, dict(lr=1e-2, weight_decay=0.1)),
    "exadam-dynamic": (optim.EXAdam, dict(lr=1e-2, dynamic_step_size=True)),
    "grams": (optim.Grams, dict(lr=1e-2, weight_decay=0.1)),
    "grams-paper-eps-uncorrected": (optim.Grams, dict(lr=1e-2, eps_placement="paper", correct_bias=False)),
    "adamomentum": (optim.AdaMomentum, dict(lr=1e-2, weight_decay=0.1)),
    "adamomentum-amsgrad-decoupled": (optim.AdaMomentum, dict(lr=1e-2, weight_decay=0.1, amsgrad=True,
                                                              decoupled_weight_decay=True)),
}

#: The optimizers whose fused path the speed work targets; each must accept fused=True.
REQUIRED = ["adamw", "adabelief", "adan", "ademamix", "lion", "diffgrad", "exadam", "grams", "adamomentum", "sgd",
            "adamp", "sgdp"]


def _params(dtype, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g).to(device, dtype)) for s in SHAPES]


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


def side_by_side(make, dtypes=(torch.float32, torch.bfloat16), device="cpu", steps=STEPS, skip_every=0):
    """Run the unfused and the fused optimizer on identical gradients (float32 and bfloat16 params in
    one group); returns both param lists, both optimizers, and the number of graphs compiled."""
    ref = [p for dt in dtypes for p in _params(dt, device)]
    fused = [torch.nn.Parameter(p.detach().clone()) for p in ref]
    opt_ref, opt_fused = make(ref, False), make(fused, True)
    schedules = [torch.optim.lr_scheduler.StepLR(o, step_size=10, gamma=0.7) for o in (opt_ref, opt_fused)]
    g = torch.Generator().manual_seed(1)
    before = _graphs()
    for step in range(steps):
        for i, (a, b) in enumerate(zip(ref, fused)):
            grad = torch.randn(a.shape, generator=g).to(device, a.dtype)
            if skip_every and i == 1 and step % skip_every == 0:
                a.grad = b.grad = None  # this tensor skips the step: its step count falls behind
            else:
                a.grad, b.grad = grad.clone(), grad.clone()
        opt_ref.step()
        opt_fused.step()
        for s in schedules:
            s.step()
    return ref, fused, opt_ref, opt_fused, _graphs() - before


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def assert_agree(ref, fused, opt_ref, opt_fused):
    for a, b in zip(ref, fused):
        assert opt_fused.state[b].keys() == opt_ref.state[a].keys()
        for key, value in opt_ref.state[a].items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
                assert value.dtype == opt_fused.state[b][key].dtype == torch.float32
                assert relative_difference(opt_fused.state[b][key], value) <= 1e-6, (key, a.dtype, tuple(a.shape))
            elif isinstance(value, torch.Tensor):
                assert torch.equal(opt_fused.state[b][key], value), key
            else:
                assert opt_fused.state[b][key] == value, key
        assert b.dtype == a.dtype
        assert relative_difference(b, a) <= 1e-6, (a.dtype, tuple(a.shape))


@pytest.mark.skipif(counters is None, reason="needs torch.compile (Dynamo)")
@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_agrees_with_the_reference_step_and_compiles_once(case):
    cls, kwargs = CASES[case]
    ref, fused, opt_ref, opt_fused, graphs = side_by_side(lambda p, f: cls(p, fused=f, **kwargs))
    assert opt_fused.fused and not opt_ref.fused
    assert graphs == 1, f"{graphs} graphs over {STEPS} steps: the program recompiled"
    assert_agree(ref, fused, opt_ref, opt_fused)
    assert any(relative_difference(a, p) > 1e-3 for a, p in zip(ref, _params(torch.float32)))  # the params moved


def test_the_listed_optimizers_accept_fused():
    for name in REQUIRED:
        assert "fused" in inspect.signature(get_optimizer(name)).parameters, name
    assert {get_optimizer(name) for name in REQUIRED} <= {cls for cls, _ in CASES.values()}


def test_every_optimizer_taking_fused_has_a_case():
    taking = {e.obj for e in list_entries("optimizer") if "fused" in inspect.signature(e.obj).parameters}
    assert taking <= {cls for cls, _ in CASES.values()}


@pytest.mark.skipif(counters is None, reason="needs torch.compile (Dynamo)")
def test_clipping_transforms_fuse():
    def make(params, fused):
        transform = gradkit.chain(gradkit.transforms.clip_by_value(-2.0, 2.0), gradkit.transforms.clip_by_block_rms(0.5),
                                  gradkit.transforms.clip_by_global_norm(gradkit.hp("max_norm")), gradkit.transforms.scale_by_adam(),
                                  gradkit.transforms.scale_by_learning_rate())
        return gradkit.Optimizer(params, transform, {"lr": 1e-2, "max_norm": 1.0}, fused=fused)

    ref, fused, opt_ref, opt_fused, graphs = side_by_side(make, dtypes=(torch.float32,))
    assert graphs == 1
    assert_agree(ref, fused, opt_ref, opt_fused)


@pytest.mark.skipif(counters is None, reason="needs torch.compile (Dynamo)")
def test_tensors_at_different_steps():
    # A tensor without a gradient skips the step, so its bias corrections lag: per-tensor scalars.
    ref, fused, opt_ref, opt_fused, graphs = side_by_side(lambda p, f: optim.AdamW(p, lr=1e-2, fused=f),
                                                          dtypes=(torch.float32,), skip_every=3)
    assert opt_ref.state[ref[1]]["step"] < opt_ref.state[ref[0]]["step"]
    assert graphs <= 4  # one program per distinct set of tensors / table layout, not per step
    assert_agree(ref, fused, opt_ref, opt_fused)


@pytest.mark.skipif(counters is None, reason="needs torch.compile (Dynamo)")
def test_param_groups_with_their_own_hyperparameters_share_one_program():
    def make(params, fused):
        groups = [{"params": params[:2]}, {"params": params[2:4], "lr": 3e-3, "weight_decay": 0.0},
                  {"params": params[4:], "maximize": True, "amsgrad": True}]
        return optim.AdamW(groups, lr=1e-2, weight_decay=0.1, fused=fused)

    ref, fused, opt_ref, opt_fused, graphs = side_by_side(make)
    assert graphs == 1
    assert_agree(ref, fused, opt_ref, opt_fused)


@pytest.mark.skipif(counters is None, reason="needs torch.compile (Dynamo)")
def test_state_dict_moves_between_fused_and_unfused():
    params = _params(torch.float32)
    opt = optim.AdamW(params, lr=1e-2, amsgrad=True, fused=True)
    g = torch.Generator().manual_seed(3)
    grads = [[torch.randn(p.shape, generator=g) for p in params] for _ in range(20)]
    for k in range(10):
        for p, grad in zip(params, grads[k]):
            p.grad = grad.clone()
        opt.step()
    saved = opt.state_dict()
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    unfused = optim.AdamW(twin, lr=1e-2, amsgrad=True)
    unfused.load_state_dict(saved)
    assert unfused.state_dict()["state"].keys() == saved["state"].keys()
    for k in range(10, 20):
        for p, q, grad in zip(params, twin, grads[k]):
            p.grad, q.grad = grad.clone(), grad.clone()
        opt.step()
        unfused.step()
    for p, q in zip(params, twin):
        assert relative_difference(p, q) <= 1e-6
        assert opt.state[p]["step"] == unfused.state[q]["step"] == 20


def test_fused_needs_a_fused_form_in_every_transform():
    w = torch.nn.Parameter(torch.randn(3, 3))
    transform = gradkit.chain(gradkit.transforms.scale_by_adam(), gradkit.transforms.autoclip(),
                              gradkit.transforms.scale_by_learning_rate())
    with pytest.raises(ValueError, match="AutoClip.*fused=False"):
        gradkit.Optimizer([w], transform, {"lr": 1e-3}, fused=True)
    with pytest.raises(ValueError, match="fused must be True or False"):
        optim.AdamW([w], fused="yes")
    assert not optim.AdamW([w]).fused


@pytest.mark.skipif(counters is None, reason="needs torch.compile (Dynamo)")
def test_a_failed_compile_leaves_params_and_state_untouched(monkeypatch):
    w = torch.nn.Parameter(torch.randn(4, 4))
    opt = optim.AdamW([w], lr=1e-2, fused=True)
    w.grad = torch.randn(4, 4)
    opt.step()
    before = w.detach().clone(), {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in opt.state[w].items()}

    def broken(*args, **kwargs):
        raise RuntimeError("compiler failed")

    monkeypatch.setattr(opt._fused_step, "_compiled", broken)
    with pytest.raises(RuntimeError, match="compiler failed"):
        opt.step()
    assert torch.equal(w, before[0])
    assert all(torch.equal(v, before[1][k]) if isinstance(v, torch.Tensor) else v == before[1][k]
               for k, v in opt.state[w].items())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_agrees_on_cuda(case):
    cls, kwargs = CASES[case]
    ref, fused, opt_ref, opt_fused, graphs = side_by_side(lambda p, f: cls(p, fused=f, **kwargs), device="cuda")
    assert graphs == 1
    assert_agree(ref, fused, opt_ref, opt_fused)


@pytest.mark.skipif(counters is None or not hasattr(torch._dynamo.exc, "FailOnRecompileLimitHit"),
                    reason="needs torch.compile with fail_on_recompile_limit_hit")
def test_too_many_recompiles_raise_instead_of_running_uncompiled():
    params = _params(torch.float32)
    opt = optim.SGD(params, lr=0.1, momentum=0.9, fused=True)
    for p in params:
        p.grad = torch.ones_like(p)
    # (config.patch, not monkeypatch: deleting a Dynamo config attribute hides it for the whole process)
    with torch._dynamo.config.patch(recompile_limit=1):
        opt.step()
        params[0].grad = None  # another set of tensors: a second version of the program
        before = [p.detach().clone() for p in params]
        with pytest.raises(RuntimeError, match="compiled 1 times.*unchanged.*fused=False"):
            opt.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert all(opt.state[p]["step"] == 1 for p in params)


@pytest.mark.skipif(counters is None, reason="needs torch.compile (Dynamo)")
def test_a_copied_fused_optimizer_is_fused_and_continues_alike():
    params = _params(torch.float32)
    opt = optim.Lion(params, lr=1e-2, fused=True)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    twin_params, twin = copy.deepcopy((params, opt))
    assert twin.fused and twin._fused_step is not opt._fused_step
    for ps, o in ((params, opt), (twin_params, twin)):
        for p in ps:
            p.grad = -torch.ones_like(p)
        o.step()
    assert all(torch.equal(p, q) for p, q in zip(params, twin_params))
