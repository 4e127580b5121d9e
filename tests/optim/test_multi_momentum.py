"""Multi-momentum variance reduction (Tondji et al., arXiv:2111.11828): one buffer per cluster, mean update."""
import pytest
import torch

import gradkit
from gradkit.optim import MultiMomentumSGD
from support import check_reduces_losses, check_rejects, check_staggered_steps


def _reference(w0, grads, clusters, k_seq, lr, beta, nu):
    bufs = torch.zeros(clusters, *w0.shape, dtype=torch.float64)
    w = w0.clone()
    for g, k in zip(grads, k_seq):
        bufs[k] = beta * bufs[k] + (1 - beta) * g
        w = w - lr * ((1 - nu) * g + nu * bufs.mean(0))
    return w, bufs


@pytest.mark.parametrize("nu", [1.0, 0.7])
def test_equals_the_per_cluster_buffers_written_out(nu):
    torch.manual_seed(0)
    w0 = torch.randn(4, 3, dtype=torch.float64)
    grads = [torch.randn(4, 3, dtype=torch.float64) for _ in range(15)]
    k_seq = [t % 3 if t < 9 else 2 - t % 2 for t in range(15)]
    expected, bufs = _reference(w0, grads, 3, k_seq, 0.1, 0.8, nu)
    w = torch.nn.Parameter(w0.clone())
    opt = MultiMomentumSGD([w], lr=0.1, clusters=3, beta=0.8, nu=nu)
    for g, k in zip(grads, k_seq):
        w.grad = g.clone()
        opt.step(cluster=k)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(opt.state[w]["multi_momentum.cluster_momenta"].movedim(-1, 0), bufs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(opt.state[w]["multi_momentum.mean_momentum"], bufs.mean(0), rtol=1e-10, atol=1e-12)


def test_cluster_out_of_range_is_refused_before_anything_changes():
    w = torch.nn.Parameter(torch.randn(3))
    opt = MultiMomentumSGD([w], clusters=2)
    w.grad = torch.ones(3)
    before = w.detach().clone()
    with pytest.raises(ValueError, match="cluster"):
        opt.step(cluster=2)
    with pytest.raises(TypeError, match="cluster"):
        opt.step(cluster=1.0)
    assert torch.equal(w.detach(), before) and opt.param_groups[0]["cluster"] == 0 and not opt.state


def test_reduces_losses():
    check_reduces_losses(lambda p: MultiMomentumSGD(p, lr=0.01, clusters=1),
                         lambda p: MultiMomentumSGD(p, lr=1.0, clusters=1))


def test_staggered_steps():
    check_staggered_steps(lambda p: MultiMomentumSGD(p, lr=0.05, clusters=2))


@pytest.mark.parametrize("bad", [{"clusters": 0}, {"beta": 1.0}, {"nu": 1.5}])
def test_rejects(bad):
    check_rejects(MultiMomentumSGD, **bad)
