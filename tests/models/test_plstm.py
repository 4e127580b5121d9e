"""pLSTM: the parallel forms agree with the recurrent reference, forward and backward, in float32."""
import pytest
import torch

from gradkit.models import PLSTM1D, PLSTM2D
from gradkit.models.plstm_scan import (gating_matrix_2d, plstm1d_parallel, plstm1d_recurrent, plstm2d_parallel,
                                       plstm2d_recurrent)

TOL = dict(atol=1e-5, rtol=1e-5)


def _gates_2d(shape, generator):
    # Sources, Marks, Direct in (0, 1); Transitions in (-1, 1); every gate differs from node to node.
    def u(low, high):
        return (low + (high - low) * torch.rand(shape, generator=generator)).requires_grad_(True)
    return [u(0, 1), u(0, 1), u(-1, 1), u(-1, 1), u(-1, 1), u(-1, 1), u(0, 1), u(0, 1), u(0, 1)]


def _grads(out, inputs, weight):
    return torch.autograd.grad((out * weight).sum(), inputs, allow_unused=True, materialize_grads=True)


@pytest.mark.parametrize("length,chunk", [(1, 4), (7, 4), (16, 16), (33, 8), (50, 64)])
def test_1d_parallel_matches_recurrent(length, chunk):
    g = torch.Generator().manual_seed(length)
    q, k = (torch.randn(3, length, 4, generator=g).requires_grad_(True) for _ in range(2))
    v = torch.randn(3, length, 5, generator=g).requires_grad_(True)
    gates = [torch.rand(3, length, generator=g).requires_grad_(True) for _ in range(4)]
    with torch.no_grad():
        gates[1].mul_(2).sub_(1)  # Transitions in (-1, 1)
    inputs = [q, k, v, *gates]
    ref = plstm1d_recurrent(*inputs)
    par = plstm1d_parallel(*inputs, chunk_size=chunk)
    torch.testing.assert_close(par, ref, **TOL)
    weight = torch.randn(ref.shape, generator=g)
    for a, b in zip(_grads(par, inputs, weight), _grads(ref, inputs, weight)):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("nx,ny,chunk", [(1, 1, None), (4, 4, None), (5, 3, None), (8, 8, 4), (7, 6, 2), (3, 9, 4), (6, 6, 1)])
def test_2d_parallel_matches_recurrent(nx, ny, chunk):
    g = torch.Generator().manual_seed(10 * nx + ny)
    q, k = (torch.randn(2, nx, ny, 4, generator=g).requires_grad_(True) for _ in range(2))
    v = torch.randn(2, nx, ny, 3, generator=g).requires_grad_(True)
    inputs = [q, k, v, *_gates_2d((2, nx, ny), g)]
    ref = plstm2d_recurrent(*inputs)
    par = plstm2d_parallel(*inputs, chunk_size=chunk)
    torch.testing.assert_close(par, ref, **TOL)
    weight = torch.randn(ref.shape, generator=g)
    for a, b in zip(_grads(par, inputs, weight), _grads(ref, inputs, weight)):
        torch.testing.assert_close(a, b, **TOL)


def test_gating_matrix_counts_edge_paths():
    # All Transitions 1, Sources and Marks 1: G[target, source] counts the edge paths between the nodes,
    # i.e. for target (x, y) and source (x', y') with dx + dy >= 1: (paths ending on an r edge) + (on a d edge)
    # = C(dx + dy, dx) (lattice paths between the two nodes), and 0 when the target is not below-right.
    ones = torch.ones(1, 4, 5)
    g = gating_matrix_2d(ones, ones, ones, ones, ones, ones, ones, ones, torch.zeros(1, 4, 5))[0]
    from math import comb
    for x, y, xs, ys in [(3, 4, 0, 0), (2, 2, 1, 0), (1, 3, 1, 1), (0, 0, 1, 1), (2, 1, 1, 2)]:
        dx, dy = x - xs, y - ys
        expected = comb(dx + dy, dx) if dx >= 0 and dy >= 0 and dx + dy > 0 else 0
        assert g[x, y, xs, ys].item() == expected


@pytest.mark.parametrize("mode", ["P", "D"])
@pytest.mark.parametrize("chunk", [None, 2])
def test_2d_layer_forms_agree(mode, chunk):
    torch.manual_seed(0)
    layer = PLSTM2D(8, 2, mode=mode, chunk_size=chunk)
    with torch.no_grad():  # move every gate away from its constant initialisation
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(2, 5, 6, 8, requires_grad=True)
    out_par = layer(x)
    grads_par = torch.autograd.grad(out_par.square().sum(), [x, *layer.parameters()])
    layer.form = "recurrent"
    out_rec = layer(x)
    grads_rec = torch.autograd.grad(out_rec.square().sum(), [x, *layer.parameters()])
    torch.testing.assert_close(out_par, out_rec, **TOL)
    for a, b in zip(grads_par, grads_rec):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_1d_layer_forms_agree():
    torch.manual_seed(1)
    layer = PLSTM1D(8, 2, chunk_size=4)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(3, 11, 8)
    out = layer(x)
    layer.form = "recurrent"
    torch.testing.assert_close(out, layer(x), **TOL)


def test_orientations_are_the_four_corners():
    # One orientation only sees the quadrant it runs from: perturbing the last node changes the first
    # node's output only for orientation 3 (both axes flipped).
    torch.manual_seed(2)
    x = torch.randn(1, 4, 4, 8)
    x2 = x.clone()
    x2[0, -1, -1] += 1.0
    for o, moves in [(0, False), (1, False), (2, False), (3, True)]:
        layer = PLSTM2D(8, 1, orientations=(o,))
        changed = not torch.allclose(layer(x)[0, 0, 0], layer(x2)[0, 0, 0])
        assert changed == moves, o


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="mode must be one of 'P', 'D'"):
        PLSTM2D(8, mode="X")
    with pytest.raises(ValueError, match="form must be one of"):
        PLSTM2D(8, form="fast")
    with pytest.raises(ValueError, match="normalization must be one of"):
        PLSTM1D(8, normalization="tanh")
    with pytest.raises(ValueError, match="orientations must be"):
        PLSTM2D(8, orientations=(0, 4))
    with pytest.raises(ValueError, match="chunk_size must be None or a power of two"):
        PLSTM2D(8, chunk_size=3)
    with pytest.raises(ValueError, match=r"dim \(10\) must be a positive multiple of num_heads \(4\)"):
        PLSTM2D(10, 4)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, X, Y, 8\)"):
        PLSTM2D(8)(torch.randn(2, 3, 8))
