"""Transforms and chain: algebraic properties, clipping invariants, the pending affine form."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradkit
from gradkit.core import StepContext

SHAPES = st.lists(st.tuples(st.integers(1, 5), st.integers(1, 4)), min_size=1, max_size=4)


def _tensors(shapes, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64) * scale for s in shapes]


def run_chain(transform, updates, params, steps=1, group=None):
    """Run ``transform`` like the optimizer does for ``steps`` steps; return each step's true update."""
    group = {"lr": 0.1, **(group or {})}
    state = transform.init(params, StepContext(group, [0] * len(params)))
    outs = []
    for step in range(1, steps + 1):
        ctx = StepContext(group, [step] * len(params))
        out = transform.update([u.clone() for u in updates], state, params, ctx)
        outs.append(ctx.materialize(out, params))
    return outs


class Double(gradkit.GradientTransform):
    """A user transform that is not scale-aware and writes in place."""

    name = "double"

    def update(self, updates, state, params, ctx):
        updates = ctx.writable(updates)
        torch._foreach_mul_(updates, 2.0)
        return updates


@settings(max_examples=25, deadline=None)
@given(SHAPES, st.integers(0, 1000))
def test_chain_is_associative(shapes, seed):
    updates, params = _tensors(shapes, seed), _tensors(shapes, seed + 1)
    parts = [gradkit.clip_by_global_norm(1.0), gradkit.trace(0.9), gradkit.add_decayed_weights(0.1),
             gradkit.scale_by_adam(), Double(), gradkit.scale_by_learning_rate()]
    left = gradkit.chain(gradkit.chain(*parts[:3]), gradkit.chain(*parts[3:]))
    right = gradkit.chain(parts[0], gradkit.chain(parts[1], gradkit.chain(*parts[2:])))
    for a, b in zip(run_chain(left, updates, params, 3), run_chain(right, updates, params, 3)):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert left.signature() == right.signature()


@settings(max_examples=25, deadline=None)
@given(SHAPES, st.integers(0, 1000), st.floats(0.01, 10.0))
def test_clip_by_global_norm_bounds_the_norm_and_keeps_direction(shapes, seed, max_norm):
    updates = _tensors(shapes, seed, scale=3.0)
    (out,) = run_chain(gradkit.clip_by_global_norm(max_norm), updates, updates)
    norm_in = math.sqrt(sum(float(u.pow(2).sum()) for u in updates))
    norm_out = math.sqrt(sum(float(u.pow(2).sum()) for u in out))
    assert norm_out <= max_norm * (1 + 1e-6)
    if norm_in <= max_norm:
        assert all(torch.allclose(a, b, rtol=1e-5) for a, b in zip(out, updates))
    ratio = [o / u for o, u in zip(out, updates)]
    assert all(torch.allclose(r, ratio[0].flatten()[0].expand_as(r), rtol=1e-6) for r in ratio)


@settings(max_examples=25, deadline=None)
@given(SHAPES, st.integers(0, 1000), st.floats(-2.0, 0.0), st.floats(0.0, 2.0))
def test_clip_by_value_stays_in_range(shapes, seed, lo, hi):
    updates = _tensors(shapes, seed, scale=3.0)
    (out,) = run_chain(gradkit.clip_by_value(lo, hi), updates, updates)
    assert all(float(u.min()) >= lo and float(u.max()) <= hi for u in out)
    assert all(torch.equal(o, u.clamp(lo, hi)) for o, u in zip(out, updates))


@settings(max_examples=25, deadline=None)
@given(SHAPES, st.integers(0, 1000), st.floats(0.01, 3.0))
def test_clip_by_block_rms_bounds_each_tensor(shapes, seed, threshold):
    updates = _tensors(shapes, seed, scale=3.0)
    (out,) = run_chain(gradkit.clip_by_block_rms(threshold), updates, updates)
    for o, u in zip(out, updates):
        assert float(o.pow(2).mean().sqrt()) <= threshold * (1 + 1e-6)
        if float(u.pow(2).mean().sqrt()) <= threshold:
            assert torch.allclose(o, u)


def test_pending_form_materializes_to_the_same_update_as_apply():
    updates, params = _tensors([(3, 2), (4,)], 0), _tensors([(3, 2), (4,)], 1)
    transform = gradkit.chain(gradkit.scale_by_adam(), gradkit.add_decayed_weights(0.3), gradkit.scale(-0.5))
    (materialized,) = run_chain(transform, updates, params)
    state = transform.init(params, StepContext({}, [0, 0]))
    ctx = StepContext({}, [1, 1])
    out = transform.update(updates, state, params, ctx)
    applied = [p.clone() for p in params]
    ctx.apply(applied, out)
    assert all(torch.allclose(a - p, m, rtol=1e-12, atol=1e-14) for a, p, m in zip(applied, params, materialized))


def test_adam_update_matches_its_equations_with_per_tensor_steps():
    updates, params = _tensors([(3,), (2,)], 0), _tensors([(3,), (2,)], 1)
    adam = gradkit.scale_by_adam(betas=(0.8, 0.9), eps=1e-3)
    state = adam.init(params, StepContext({}, [0, 0]))
    state["exp_avg"][1].fill_(0.5)
    state["exp_avg_sq"][1].fill_(0.25)
    ctx = StepContext({}, [1, 4])
    out = ctx.materialize(adam.update(updates, state, params, ctx), params)
    g = updates[1]
    m = 0.8 * 0.5 + 0.2 * g
    v = 0.9 * 0.25 + 0.1 * g * g
    expected = (m / (1 - 0.8**4)) / ((v / (1 - 0.9**4)).sqrt() + 1e-3)
    assert torch.allclose(out[1], expected, rtol=1e-12)


def test_trace_nesterov_matches_its_equations():
    updates, params = _tensors([(5,)], 0), _tensors([(5,)], 1)
    outs = run_chain(gradkit.trace(momentum=0.9, nesterov=True), updates, params, steps=3)
    g = updates[0]
    b1 = g
    b2 = 0.9 * b1 + g
    b3 = 0.9 * b2 + g
    assert torch.allclose(outs[0][0], g + 0.9 * b1) and torch.allclose(outs[2][0], g + 0.9 * b3)


def test_scale_by_learning_rate_reads_the_group_each_step():
    updates = _tensors([(2,)], 0)
    (out,) = run_chain(gradkit.scale_by_learning_rate(), updates, updates, group={"lr": 0.25})
    assert torch.allclose(out[0], -0.25 * updates[0])


def test_missing_hyperparameter_is_named():
    with pytest.raises(ValueError, match="'lr' is not set"):
        gradkit.Optimizer([torch.nn.Parameter(torch.ones(2))], gradkit.chain(gradkit.scale_by_learning_rate()))


@pytest.mark.parametrize("make, name", [
    (lambda: gradkit.clip_by_global_norm(0.0), "max_norm"), (lambda: gradkit.clip_by_block_rms(-1.0), "threshold"),
    (lambda: gradkit.clip_by_value(1.0, -1.0), "max_value"), (lambda: gradkit.trace(momentum=-0.1), "momentum"),
])
def test_bad_transform_arguments_are_named(make, name):
    with pytest.raises(ValueError, match=name):
        gradkit.Optimizer([torch.nn.Parameter(torch.ones(2))], gradkit.chain(make(), gradkit.scale_by_learning_rate()),
                          defaults={"lr": 0.1})


def test_scale_rejects_non_numbers():
    with pytest.raises(ValueError, match="factor"):
        gradkit.scale("2")
    with pytest.raises(TypeError, match="GradientTransform"):
        gradkit.chain(gradkit.scale(2.0), "adam")
