"""The transform protocol: one definition per transform for both steps, declared state and transform
kinds, ownership, ordering and learning-rate checks, weight prediction, and a core free of algorithms."""
from __future__ import annotations

import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import gradkit
import gradkit.transforms as T
from gradkit.core import StepContext
from gradkit.core.ops import FOREACH, TRACED, ScalarList
from gradkit.core.state import PER_TENSOR, SECOND_MOMENT, TRANSFORM_KINDS, StateKind
from gradkit.registry import list_entries

SRC = Path(gradkit.__file__).resolve().parent.parent


def _lists(seed, shapes=((3, 2), (4,), (1,))):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(s, generator=g) + 0.5 for s in shapes]


@pytest.mark.parametrize("op,args", [
    ("lerp_", ("y", 0.3)), ("mul_", (0.7,)), ("div_", ([2.0, 3.0, 4.0],)), ("add_", ("y", 0.25)),
    ("addcmul_", ("y", "y", 0.5)), ("addcdiv_", ("y", "y", -0.5)), ("maximum_", ("y",)), ("sqrt_", ()),
    ("sign_", ()), ("sigmoid_", ()), ("clamp_max_", (0.9,)), ("add_", (0.125,)),
])
def test_traced_ops_compute_what_the_foreach_ops_do(op, args):
    xs_a, xs_b, ys = _lists(0), _lists(0), _lists(1)

    def resolve(a, traced):
        if a == "y":
            return ys
        if traced and isinstance(a, float):
            return torch.tensor(a, dtype=torch.float64)  # as the fused step's scalars arrive
        if traced and isinstance(a, list):
            return ScalarList(torch.tensor(v, dtype=torch.float64) for v in a)
        return a

    getattr(FOREACH, op)(xs_a, *(resolve(a, False) for a in args))
    getattr(TRACED, op)(xs_b, *(resolve(a, True) for a in args))
    for a, b in zip(xs_a, xs_b):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    assert any(not torch.equal(a, x) for a, x in zip(xs_a, _lists(0)))  # the op did something


def test_identity_scalars_cost_no_pass():
    xs = _lists(0)
    before = [x.data_ptr() for x in xs]
    FOREACH.mul_(xs, 1.0)
    FOREACH.add_(xs, 0.0)
    FOREACH.div_(xs, [1.0, 1.0, 1.0])
    assert [x.data_ptr() for x in xs] == before and all(torch.equal(a, b) for a, b in zip(xs, _lists(0)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("op,value", [
    ("mul_", 0.999), ("div_", 0.9486832980505138), ("add_", 1e-8), ("mul", 1 / 3), ("div", 3e-39), ("add", 1e30),
    ("mul_", -0.25), ("add_", 2.0 ** -130),
])
def test_foreach_ops_by_a_number_give_the_bits_of_torchs_number_overloads(op, value, dtype):
    # on the CPU the unfused ops pass numbers as cached 0-dim tensors (faster); the bits must not move
    xs, ref = _lists(0), _lists(0)
    xs, ref = [x.to(dtype) for x in xs], [x.to(dtype) for x in ref]
    out = getattr(FOREACH, op)(xs, value)
    expected = getattr(torch, f"_foreach_{op}")(ref, value)
    got, want = (xs, ref) if op.endswith("_") else (out, expected)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    again = getattr(FOREACH, op)(xs, value)  # the cached tensor is read, never written
    assert again is None or all(torch.equal(a, b) for a, b in zip(again, getattr(torch, f"_foreach_{op}")(ref, value)))


def test_a_scalar_first_used_in_inference_mode_still_works_under_autograd():
    value = 0.123456789  # a number no other test uses, so that the cache meets it here first
    with torch.inference_mode():
        FOREACH.mul_([torch.ones(3)], value)
    leaf = torch.ones(3, requires_grad=True)
    FOREACH.mul([leaf * 2.0], value)[0].sum().backward()
    assert torch.allclose(leaf.grad, torch.full((3,), 2.0 * value))


def test_a_scalar_first_used_under_another_default_device_is_cached_on_the_cpu():
    value = 0.987654321  # a number no other test uses
    with torch.device("meta"):
        xs = [torch.ones(3, device="cpu")]
        FOREACH.mul_(xs, value)
    ys = [torch.ones(3)]
    FOREACH.mul_(ys, value)
    assert torch.equal(xs[0], torch.full((3,), value)) and torch.equal(ys[0], xs[0])


class Halve(gradkit.GradientTransform):
    """A user transform written once in ctx.ops and its scalars: both steps run it."""

    name = "halve"
    fusable = True
    state_kinds = {"count": "first_moment"}

    def init(self, params, ctx):
        return {"count": [torch.zeros_like(p) for p in params]}

    def scalars(self, group, step):
        return {"factor": 0.5 ** step}

    def update(self, updates, state, params, ctx):
        s = ctx.scalars(self)
        ctx.ops.add_(state["count"], updates)
        return ctx.fresh(ctx.ops.mul(updates, s["factor"]))


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="needs torch.compile")
def test_a_user_transform_gets_its_fused_step_from_its_one_update():
    def make(params, fused):
        return gradkit.Optimizer(params, gradkit.chain(Halve(), gradkit.scale_by_learning_rate()), {"lr": 0.1},
                                 fused=fused)

    a = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2, 2))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    opt_a, opt_b = make(a, False), make(b, True)
    for step in range(3):
        for p, q in zip(a, b):
            p.grad = torch.full_like(p, float(step + 1))
            q.grad = p.grad.clone()
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=0)
        torch.testing.assert_close(opt_a.state[p]["halve.count"], opt_b.state[q]["halve.count"])
    assert not torch.equal(a[0], torch.ones(3))


def test_scalars_are_floats_per_tensor_when_steps_differ():
    adam = T.scale_by_adam()
    ctx = StepContext({"lr": 0.1}, [1, 3, 3])
    s = ctx.scalars(adam)
    assert s["one_minus_b1"] == pytest.approx(0.1)  # the same at every step: one float
    assert s["bias_correction1"] == pytest.approx([0.1, 1 - 0.9**3, 1 - 0.9**3])
    with pytest.raises(RuntimeError, match="fused step"):
        StepContext({}, [1], ops=TRACED, scalar_trees=[{}]).steps


def _meta_init(transform, group, shapes=((4, 3), (5,))):
    params = [torch.empty(s, device="meta") for s in shapes]
    return transform.init(params, StepContext(group, [0] * len(params)))


GROUP = {"lr": 0.1, "weight_decay": 0.0, "maximize": False, "use_branch": True, "betas": (0.9, 0.999), "eps": 1e-8,
         "project": True, "density": 0.5, "update_freq": 10, "update_proj_gap": 10, "state_policy": "reset", "seed": 0}


# transforms that need arguments, built with a stateful inner transform where they wrap one
BUILD = {
    "select_by_group": lambda: T.select_by_group(on=T.scale_by_adam(), off=T.trace()),
    "project_split": lambda: __import__("gradkit.lowrank", fromlist=["project_split"]).project_split(
        T.scale_by_adam(), "random", rank=2, complement="fira"),
    "scale": lambda: T.scale(2.0),
    "cautious": lambda: T.cautious(T.scale_by_adam()),
    "schedule_free": lambda: T.schedule_free(T.scale_by_rms(), lr=1.0),
    "scale_by_prodigy": lambda: T.scale_by_prodigy(lr=1.0),
    "scale_by_dadapt_adam": lambda: T.scale_by_dadapt_adam(lr=1.0),
}


@pytest.mark.parametrize("entry", [e for e in list_entries("transform") if inspect.isclass(e.obj)], ids=lambda e: e.name)
def test_every_transform_declares_its_kind_and_its_state_kinds(entry):
    assert entry.obj.kind in TRANSFORM_KINDS
    transform = BUILD.get(entry.name, entry.obj)()
    keys = _meta_init(transform, GROUP)
    for key in keys:
        assert isinstance(transform.kind_of(key), StateKind), key
    if entry.name in ("scale_by_adam", "project_split"):
        assert keys  # the check saw state


def test_wrappers_nest_state_under_one_scheme_and_kinds_follow():
    chain = gradkit.chain(T.project_radial(T.scale_by_adam()), T.scale_by_learning_rate())
    keys = set(_meta_init(chain, GROUP))
    assert keys == {"radial.inner.adam.exp_avg", "radial.inner.adam.exp_avg_sq"}
    assert chain.kind_of("radial.inner.adam.exp_avg_sq") == SECOND_MOMENT
    assert chain.kind_of("radial.inner.adam.exp_avg_sq").non_negative
    assert not chain.kind_of("radial.inner.adam.exp_avg").non_negative
    select = gradkit.chain(T.select_by_group(on=T.sign_momentum(), off=T.trace()))
    assert set(_meta_init(select, GROUP)) == {"select.on.sign_momentum.exp_avg"}
    with pytest.raises(KeyError, match="declares no kind"):
        chain.kind_of("radial.inner.adam.no_such_key")


class Borrow(gradkit.GradientTransform):
    """Returns its own state buffers: they must not be written by later transforms."""

    name = "borrow"
    state_kinds = {"buffer": "first_moment"}

    def init(self, params, ctx):
        return {"buffer": [torch.ones_like(p) for p in params]}

    def update(self, updates, state, params, ctx):
        return list(state["buffer"])  # undeclared: treated as borrowed


class Double(gradkit.GradientTransform):
    name = "double"

    def update(self, updates, state, params, ctx):
        updates = ctx.writable(updates)
        ctx.ops.mul_(updates, 2.0)
        return updates


def test_undeclared_outputs_are_borrowed_so_state_is_never_written_by_another_transform():
    w = torch.nn.Parameter(torch.zeros(3))
    opt = gradkit.Optimizer([w], gradkit.chain(Borrow(), Double(), gradkit.scale(-1.0)))
    w.grad = torch.ones(3)
    opt.step()
    assert torch.equal(opt.state[w]["borrow.buffer"], torch.ones(3))
    assert torch.equal(w.detach(), torch.full((3,), -2.0))


def _product_context(scale, decay):
    """Four params: a plain update, two pending products (one into a non-contiguous param) and a plain one."""
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(5, generator=g), torch.randn(6, 4, generator=g), torch.randn(4, 6, generator=g).T,
              torch.randn(2, 3, 2, generator=g)]
    factors = {1: (torch.randn(6, 2, generator=g), torch.randn(2, 4, generator=g), (6, 4)),
               2: (torch.randn(6, 3, generator=g), torch.randn(3, 4, generator=g), (6, 4)),
               3: (torch.randn(2, 1, generator=g), torch.randn(1, 6, generator=g), (2, 3, 2))}
    updates = [torch.randn(5, generator=g), factors[1][0], factors[2][0], factors[3][0]]  # placeholders
    ctx = StepContext({}, [1] * 4)
    updates = ctx.defer_products(updates, factors)
    ctx.multiply(scale)
    ctx.add_decay(decay)
    return ctx, params, updates, factors


@pytest.mark.parametrize("scale", [-0.1, ScalarList([-0.1, 0.2, -0.3, 0.0])])
def test_a_pending_product_is_applied_inside_the_multiply_as_its_update_would_be(scale):
    ctx, params, updates, factors = _product_context(scale, 0.01)
    assert not ctx.is_plain
    expected = [p.clone() for p in params]
    full = [updates[0]] + [(a @ b).reshape(shape) for a, b, shape in factors.values()]
    scales = list(scale) if isinstance(scale, list) else [scale] * 4
    for e, u, f in zip(expected, full, scales):
        e.mul_(1 + 0.01).add_(u, alpha=f)  # the decay was added after the scale: it is not scaled
    ctx.apply(params, updates)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p, e, rtol=1e-6, atol=1e-6)
    # materialize forms the products (new tensors, the param's shape) with the scale and decay
    ctx, params, updates, factors = _product_context(scale, 0.01)
    out = ctx.materialize(updates, params)
    assert ctx.is_plain and not ctx.products and [u.shape for u in out] == [p.shape for p in params]
    for o, u, f, p in zip(out, full, scales, params):
        torch.testing.assert_close(o, u * f + 0.01 * p, rtol=1e-6, atol=1e-6)


def test_pending_products_need_a_plain_context_and_follow_an_absorbed_order():
    ctx = StepContext({}, [1, 1])
    ctx.multiply(2.0)
    with pytest.raises(RuntimeError, match="plain context"):
        ctx.defer_products([torch.zeros(2), torch.zeros(2)], {0: (torch.ones(2, 1), torch.ones(1, 1), (2,))})
    inner = StepContext({}, [1, 1])
    left, right = torch.ones(2, 1), torch.full((1, 3), 2.0)
    inner_updates = inner.defer_products([torch.zeros(3), left], {1: (left, right, (2, 3))})
    outer = StepContext({}, [1, 1])
    reordered = outer.absorb(inner, inner_updates, order=[1, 0])  # outer tensor 0 is inner tensor 1
    assert list(outer.products) == [0]
    assert torch.equal(outer.evaluate_products(reordered)[0], torch.full((2, 3), 2.0))


class DeferTwice(gradkit.GradientTransform):
    """Leaves each update pending as the product of a column of twos and a row of ones."""

    kind = PER_TENSOR

    def update(self, updates, state, params, ctx):
        products = {j: (torch.full((u.shape[0], 1), 2.0), torch.ones(1, u.shape[1]), u.shape)
                    for j, u in enumerate(updates)}
        return ctx.defer_products(list(updates), products)


def test_a_wrapper_reads_an_inner_chains_pending_products_as_values():
    # cautious compares update and gradient signs: it must see the products' values, not their placeholders
    w = torch.nn.Parameter(torch.zeros(3, 2))
    opt = gradkit.Optimizer([w], gradkit.chain(T.cautious(DeferTwice()), gradkit.scale(-1.0)))
    w.grad = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    opt.step()
    mask = (w.grad > 0).float()  # the 4 agreeing signs kept, rescaled by numel / (kept + 1) (cautious_mask)
    torch.testing.assert_close(w.detach(), -2.0 * mask * 6 / 5)


def test_ordering_constraints_fail_when_the_chain_is_built_naming_both_transforms():
    with pytest.raises(ValueError, match="DecoupledDecay must come after ScaleByLearningRate"):
        gradkit.chain(T.scale_by_adam(), T.decoupled_decay(0.1), T.scale_by_learning_rate())
    with pytest.raises(ValueError, match="ProximalDecay must come after ScaleByLearningRate"):
        gradkit.chain(T.proximal_decay(0.1), T.scale_by_learning_rate())
    gradkit.chain(T.scale_by_adam(), T.scale_by_learning_rate(), T.decoupled_decay(0.1))  # the right order builds
    from gradkit.lowrank import project_split
    with pytest.raises(ValueError, match="ProjectedSplit.*ScaleByLearningRate"):
        project_split(gradkit.chain(T.scale_by_adam(), T.scale_by_learning_rate()))


def test_a_chain_that_never_applies_the_learning_rate_warns_once():
    params = [torch.nn.Parameter(torch.zeros(2))]
    chain = gradkit.chain(T.scale_by_adam())
    with pytest.warns(UserWarning, match="(?s)lr=0.001.*ScaleByAdam.*scale_by_learning_rate"):
        opt = gradkit.Optimizer(params, chain, {"lr": 1e-3})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))]})  # once per chain
        gradkit.optim.AdamW(params)  # a recipe applies it
        gradkit.Optimizer(params, gradkit.chain(T.scale(-1.0)))  # no lr in the group: nothing to apply
        gradkit.Optimizer(params, gradkit.chain(T.project_radial(T.scale_by_adam()), T.scale_by_learning_rate()),
                          {"lr": 0.1})  # inner chains are not checked on their own


def test_weight_prediction_follows_the_chain_and_refuses_what_cannot_predict():
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = gradkit.optim.AdamW([w], lr=0.1, weight_decay=0.5)
    w.grad = torch.tensor([0.5, 0.5])
    opt.step()
    real = w.detach().clone()
    with opt.predicted_weights(steps=1):
        # Adam's first-step direction is sign(g); plus the decoupled decay, times -lr
        expected = real - 0.1 * (torch.tensor([1.0, 1.0]) + 0.5 * real)
        torch.testing.assert_close(w.detach(), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(w.detach(), real)
    grams = gradkit.optim.Grams([w])
    w.grad = torch.ones(2)
    grams.step()
    with pytest.raises(TypeError, match="ScaleByGrams"):
        with grams.predicted_weights():
            pass
    clipped = gradkit.Optimizer([w], gradkit.chain(T.scale_by_adam(), T.clip_by_value(), T.scale_by_learning_rate()),
                                {"lr": 0.1})
    clipped.step()
    with pytest.raises(TypeError, match="ClipByValue after ScaleByAdam"):
        with clipped.predicted_weights():
            pass


def test_the_core_and_the_transforms_import_without_any_optimizer_module():
    # Load gradkit.core and gradkit.transforms without running gradkit/__init__ (which imports every
    # recipe): no module of gradkit.optim may be needed by them.
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('gradkit'); pkg.__path__ = [{str(SRC / 'gradkit')!r}]; sys.modules['gradkit'] = pkg\n"
        "import gradkit.core, gradkit.core.optimizer, gradkit.core.fused, gradkit.core.prediction, gradkit.transforms\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('gradkit.optim'))\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def _public_callables():
    for name in T.__all__:
        obj = getattr(T, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield name, obj


@pytest.mark.parametrize("name,obj", list(_public_callables()), ids=[n for n, _ in _public_callables()])
def test_every_public_transform_and_function_documents_itself_with_an_example(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert ">>>" in doc, f"{name} has no doctest"
