"""MKOR (Mozaffari et al., arXiv:2306.01685): Sherman-Morrison inverses equal exact inverses of the factors."""
import pytest
import torch

import gradkit
from gradkit.optim import MKOR


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3, bias=False))


def test_inverse_factors_equal_exact_inverses_after_rank1_updates():
    net = _net()
    beta = 0.9
    opt = MKOR(net, gradkit.optim.SGD(net.parameters(), lr=0.01), beta=beta, inv_freq=1)
    exact = {m: [torch.eye(m.weight.shape[0], dtype=torch.float64),
                 torch.eye(m.weight.shape[1] + (m.bias is not None), dtype=torch.float64)]
             for m in (net[0], net[2])}
    g = torch.Generator().manual_seed(1)
    inputs = {}
    net[2].register_forward_hook(lambda m, i, o: inputs.__setitem__(m, i[0]))
    for _ in range(12):
        x = torch.randn(16, 5, generator=g)
        opt.zero_grad()
        out = net(x)
        out.retain_grad()
        h = net[0](x)
        out.pow(2).mean().backward()
        # the factors' vectors written out: batch means of the inputs (with 1 for the bias) and of dL/d(out)
        a0 = torch.cat([x.mean(0), torch.ones(1)]).double()
        a2 = inputs[net[2]].detach().mean(0).double()
        g2 = out.grad.mean(0).double()
        g0 = opt._stats[net[0]]["g"].double()  # dL/dh is internal; the hook's value is checked by the next line
        torch.testing.assert_close(opt._stats[net[2]]["g"].double(), g2)
        for m, (gv, av) in ((net[0], (g0, a0)), (net[2], (g2, a2))):
            exact[m][0] = beta * exact[m][0] + (1 - beta) * torch.outer(gv, gv)
            exact[m][1] = beta * exact[m][1] + (1 - beta) * torch.outer(av, av)
        opt.step()
        del h
    for m in (net[0], net[2]):
        l_inv, r_inv = opt.inverses(m)
        torch.testing.assert_close(l_inv.double(), torch.linalg.inv(exact[m][0]), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(r_inv.double(), torch.linalg.inv(exact[m][1]), rtol=1e-5, atol=1e-5)
    assert opt.resets == 0


def test_gradient_is_preconditioned_and_rescaled_to_its_norm():
    net = torch.nn.Linear(4, 3)
    seen = {}

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            seen["w"], seen["b"] = net.weight.grad.clone(), net.bias.grad.clone()
            return super().step(closure)

    opt = MKOR(net, Spy(net.parameters(), lr=0.1), beta=0.5, inv_freq=1)
    x = torch.randn(10, 4)
    net(x).pow(2).sum().backward()
    raw = torch.cat([net.weight.grad, net.bias.grad[:, None]], 1).clone()
    opt.step()
    l_inv, r_inv = opt.inverses(net)
    pre = l_inv @ raw @ r_inv
    pre = pre * raw.norm() / pre.norm()
    torch.testing.assert_close(torch.cat([seen["w"], seen["b"][:, None]], 1), pre)
    assert not torch.allclose(pre, raw)


def test_stabilisation_resets_an_exploding_inverse_and_falls_back():
    net = torch.nn.Linear(3, 2, bias=False)
    opt = MKOR(net, torch.optim.SGD(net.parameters(), lr=0.1), beta=0.01, inv_freq=1, max_inverse=10.0)
    for _ in range(3):  # beta = 0.01: each update divides the inverse by 0.01 along the unseen directions
        opt.zero_grad()
        net(torch.randn(4, 3)).sum().backward()
        opt.step()
    assert opt.resets > 0
    assert all(float(f.abs().max()) <= 10.0 for f in opt.inverses(net))


def test_first_order_when_second_order_is_off():
    net = torch.nn.Linear(3, 2)
    opt = MKOR(net, torch.optim.SGD(net.parameters(), lr=0.1))
    opt.second_order = False
    net(torch.randn(4, 3)).sum().backward()
    w, gw = net.weight.detach().clone(), net.weight.grad.clone()
    opt.step()
    torch.testing.assert_close(net.weight.detach(), w - 0.1 * gw)


def test_trains_digits_mlp():
    from support import digits_batch
    x, y = digits_batch(256)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    opt = MKOR(net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), inv_freq=2)
    first = None
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss.detach())
    assert float(loss.detach()) < 0.5 * first


@pytest.mark.parametrize("kw, match", [({"beta": 1.0}, "beta"), ({"inv_freq": 0}, "inv_freq"),
                                       ({"max_inverse": 0.0}, "max_inverse")])
def test_rejects(kw, match):
    net = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=match):
        MKOR(net, torch.optim.SGD(net.parameters(), lr=0.1), **kw)
