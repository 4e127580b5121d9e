"""Steps on FSDP2-sharded (DTensor) params: local shards, reductions completed over the mesh, refusals.

Gloo ranks each train an FSDP2-wrapped copy of a small model on their share of a 16-example batch;
one process trains it on all 16 examples; parameters must agree to 1e-5 relative per tensor. The
model has a weight that is scale-invariant as a whole (divided by its Frobenius norm: AdamP/SGDP's
layer mode) and one whose rows are (each row divided by its norm: channel mode), so the radial
projection's both modes run on shards; every first dimension (9, 7, 5, 3) is odd, and with 4 ranks the
last layer's 3 rows leave one rank an empty shard.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gradkit
import gradkit.distributed as gd
from gradkit.core.state import PER_TENSOR
from gradkit.registry import get_optimizer
from gradkit.transforms.radial import CHANNEL, LAYER, radial_modes

from dist_harness import run_on_ranks, run_once

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")

TOL = 1e-5
STEPS = 10
GLOBAL_BATCH = 16


class FrobeniusNormed(nn.Module):
    """A linear map by ``W / ||W||_F``: the loss is invariant to the scale of ``W`` as a whole."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in))

    def forward(self, x):
        return x @ (self.weight / self.weight.norm()).T


class RowNormed(FrobeniusNormed):
    """A linear map by ``W`` with each row divided by its norm: invariant to each row's scale."""

    def forward(self, x):
        return x @ (self.weight / self.weight.norm(dim=1, keepdim=True)).T


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 9), FrobeniusNormed(9, 7), nn.GELU(), RowNormed(7, 5), nn.Tanh(), nn.Linear(5, 3))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(GLOBAL_BATCH, 6, generator=g), torch.randn(GLOBAL_BATCH, 3, generator=g)


def _chain(*transforms):
    return lambda params: gradkit.Optimizer(params, gradkit.chain(*transforms, gradkit.scale_by_learning_rate()),
                                            defaults={"lr": 1e-2, "weight_decay": 0.01})


# name -> a function of the params that builds the optimizer
OPTIMIZERS = {
    "adamp": lambda params: get_optimizer("adamp")(params, lr=1e-2, weight_decay=0.1),
    "sgdp": lambda params: get_optimizer("sgdp")(params, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "sgdsai": lambda params: get_optimizer("sgdsai")(params, lr=1e-2),
    "clip_global_adam": _chain(gradkit.clip_by_global_norm(1e-3), gradkit.scale_by_adam()),
    "clip_rms_momentum": _chain(gradkit.clip_by_block_rms(1e-4), gradkit.trace(0.9)),
    "autoclip_momentum": _chain(gradkit.autoclip(percentile=50.0), gradkit.trace(0.9)),
    "elementwise": _chain(gradkit.trace(0.9, nesterov=True), gradkit.add_decayed_weights()),
}
FOUR_RANKS = ["adamp", "sgdsai", "clip_global_adam"]


def _train(model, opt, x, y):
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _group_tensors(opt) -> list:
    """The group-level state's tensors (AutoClip's norm history, SGD-SaI's largest g-SNR), in a fixed order."""
    def walk(value):
        if isinstance(value, torch.Tensor):
            yield value.detach().clone()
        elif isinstance(value, dict):
            for key in sorted(value):
                yield from walk(value[key])
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from walk(item)

    return list(walk(opt.group_states))


def _reference(method):
    model = _model()
    x, y = _data()
    opt = OPTIMIZERS[method](model.parameters())
    _train(model, opt, x, y)
    return [p.detach().clone() for p in model.parameters()], _group_tensors(opt)


def _sharded(mesh):
    from torch.distributed.fsdp import fully_shard

    model = _model()
    for i in (0, 1, 3, 5):
        fully_shard(model[i], mesh=mesh)
    return fully_shard(model, mesh=mesh)


def _worker(rank, world_size, methods):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor

    mesh = init_device_mesh("cpu", (world_size,))
    x, y = _data()
    share = gd.rank_slice(GLOBAL_BATCH, rank, world_size)
    results = {}
    for method in methods:
        model = _sharded(mesh)
        opt = OPTIMIZERS[method](model.parameters())
        _train(model, opt, x[share], y[share])
        states_sharded = all(isinstance(v, DTensor) for s in opt.state.values() for v in s.values()
                             if isinstance(v, torch.Tensor) and v.dim() > 0)
        params = [p.full_tensor().detach().clone() for p in model.parameters()]
        results[method] = (params, states_sharded, _group_tensors(opt))
    return results


def _check(results, method):
    want, want_group = _reference(method)
    for rank, result in enumerate(results):
        got, states_sharded, got_group = result[method]
        for i, (a, b) in enumerate(zip(got, want)):
            err = float((a - b).abs().max() / b.abs().max())
            assert err <= TOL, f"rank {rank}, parameter {i}: relative difference {err:.2e} > {TOL}"
        assert len(got_group) == len(want_group), f"rank {rank}: group-level state differs in layout"
        for a, b in zip(got_group, want_group):  # statistics of whole tensors, not of this rank's shards
            assert torch.allclose(a, b, rtol=TOL, atol=0.0), f"rank {rank}: group-level state {a} != {b}"
        assert states_sharded, f"rank {rank}: a per-element state tensor is not a DTensor in optimizer.state"


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    return run_once(tmp_path_factory, "sharded-step-2", _worker, 2, list(OPTIMIZERS), timeout=240)


@pytest.fixture(scope="module")
def four_ranks(tmp_path_factory):
    return run_once(tmp_path_factory, "sharded-step-4", _worker, 4, FOUR_RANKS, timeout=240)


def test_model_exercises_both_radial_modes():
    model = _model()
    x, y = _data()
    nn.functional.mse_loss(model(x), y).backward()
    params = [model[1].weight, model[3].weight]
    assert radial_modes([p.grad for p in params], params, 0.1, 1e-8) == [LAYER, CHANNEL]


@pytest.mark.parametrize("method", list(OPTIMIZERS))
def test_fsdp2_two_ranks_equal_full_batch(two_ranks, method):
    _check(two_ranks, method)


@pytest.mark.parametrize("method", FOUR_RANKS)
def test_fsdp2_four_ranks_with_an_empty_shard_equal_full_batch(four_ranks, method):
    _check(four_ranks, method)


class ScaleByOwnNorm(gradkit.GradientTransform):
    """A user's transform with a statistic of each whole tensor (its norm) and no rule for shards: it is
    neither ``shard_aware`` nor stepped on owner ranks, so a sharded param is refused rather than stepped
    on its local rows."""

    kind = PER_TENSOR

    def update(self, updates, state, params, ctx):
        return ctx.fresh([u / u.norm().clamp_min(1e-12) for u in updates])


def _refusal_worker(rank, world_size):
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (world_size,))
    x, y = _data()
    model = _sharded(mesh)
    transform = gradkit.chain(ScaleByOwnNorm(), gradkit.trace(0.9), gradkit.scale_by_learning_rate())
    opt = gradkit.Optimizer(model.named_parameters(), transform, {"lr": 1e-2})
    nn.functional.mse_loss(model(x), y).backward()
    before = [p.detach().to_local().clone() for p in model.parameters()]
    try:
        opt.step()
        message = None
    except TypeError as err:
        message = str(err)
    unchanged = all(torch.equal(b, p.detach().to_local()) for b, p in zip(before, model.parameters()))
    return message, unchanged, len(opt.state)


def test_a_method_that_cannot_step_shards_exactly_names_the_param():
    names = [n for n, _ in _model().named_parameters()]
    for rank, (message, unchanged, n_states) in enumerate(run_on_ranks(_refusal_worker, 2, timeout=120)):
        assert message is not None, f"rank {rank}: ScaleByOwnNorm stepped sharded params without an error"
        assert "ScaleByOwnNorm" in message, message
        assert "is sharded" in message and "cannot step it exactly" in message, message
        assert any(f"'{n}'" in message for n in names), f"the error names no param: {message}"
        assert unchanged and n_states == 0, f"rank {rank}: the refused step changed params or state"
