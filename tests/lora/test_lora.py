"""LoRA adapters, LoRA-GA's initialisation and LoRA-Pro's adapter gradients, against their definitions."""
import pytest
import torch
from torch import nn

from gradkit.lora import LoRALinear, apply_lora, lora_ga_init, lora_pro_


def _net(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 12), nn.Tanh(), nn.Linear(12, 8)).to(dtype)


def test_apply_lora_starts_at_the_base_model_and_merge_round_trips():
    net = _net()
    x = torch.randn(4, 10, dtype=torch.float64)
    before = net(x)
    apply_lora(net, rank=2, alpha=4)
    assert torch.equal(net(x), before)
    with torch.no_grad():
        for m in (net[0], net[2]):
            m.lora_B.normal_()
    adapted = net(x)
    assert not torch.allclose(adapted, before)
    w = net[0].base.weight.clone()
    net[0].merge()
    torch.testing.assert_close(net(x), adapted)
    net[0].unmerge()
    torch.testing.assert_close(net[0].base.weight, w)


def test_apply_lora_rejects_bad_input_before_changing_the_model():
    net = _net()
    with pytest.raises(ValueError, match="targets must name nn.Linear"):
        apply_lora(net, rank=2, targets=["1"])
    with pytest.raises(ValueError, match=r"rank must be an int in \[1, 8\]"):
        apply_lora(net, rank=9)  # fits the first layer (10x12) but not the second (12x8)
    assert isinstance(net[0], nn.Linear) and all(p.requires_grad for p in net.parameters())
    with pytest.raises(ValueError, match="alpha must be"):
        LoRALinear(nn.Linear(3, 3), rank=1, alpha=0)


def test_lora_ga_first_step_is_the_scaled_rank_2r_gradient_step_and_outputs_are_unchanged():
    net = _net()
    apply_lora(net, rank=2, alpha=4)
    x, y = torch.randn(32, 10, dtype=torch.float64), torch.randn(32, 8, dtype=torch.float64)

    def loss_fn(model, batch):
        return (model(batch[0]) - batch[1]).square().mean()

    before = net(x)
    grads = lora_ga_init(net, loss_fn, [(x[:16], y[:16]), (x[16:], y[16:])], gamma=4.0)
    torch.testing.assert_close(net(x), before)
    # the averaged gradient over the two batches is the full-batch gradient (equal halves, mean loss)
    net.zero_grad()
    loss_fn(net, (x, y)).backward()
    for m, g in zip((net[0], net[2]), grads):
        s, c2 = m.scaling, m.out_features ** 0.5 / 4.0
        u, sv, vh = torch.linalg.svd(g, full_matrices=False)
        # the product itself: s B A = s c^2 U[:, r:2r] V[:, :r]^T
        torch.testing.assert_close(m.delta(), s * c2 * u[:, 2:4] @ vh[:2])
        # one plain-gradient step of the adapters moves W by -lr s^2 c^2 (best rank-2r approximation of G)
        lr = 1e-3
        equivalent = s * (m.lora_B.grad @ m.lora_A + m.lora_B @ m.lora_A.grad)
        rank_2r = u[:, :4] @ torch.diag(sv[:4]) @ vh[:4]
        torch.testing.assert_close(-lr * equivalent, -lr * s * s * c2 * rank_2r)


def test_lora_ga_rejects_rank_above_half_the_width():
    net = _net()
    apply_lora(net, rank=5)
    with pytest.raises(ValueError, match="2 \\* rank <= min"):
        lora_ga_init(net, lambda m, b: m(b).sum(), [torch.randn(2, 10, dtype=torch.float64)])


def _pro_setup(zero_b=False, seed=1):
    torch.manual_seed(seed)
    m = LoRALinear(nn.Linear(6, 5).double(), rank=2, alpha=3)
    if not zero_b:
        with torch.no_grad():
            m.lora_B.normal_()
    g = torch.randn(5, 6, dtype=torch.float64)  # the full gradient in W
    s = m.scaling
    m.lora_A.grad = s * m.lora_B.detach().T @ g     # LoRA's chain-rule gradients for that g
    m.lora_B.grad = s * g @ m.lora_A.detach().T
    return m, g


def _least_squares_equivalent(m, g):
    """min over (gA, gB) of ||s (B gA + gB A) - g||_F, by an explicit least-squares solve."""
    a, b, s = m.lora_A.detach(), m.lora_B.detach(), m.scaling
    r, n = a.shape
    cols = []
    for k in range(r * n + b.numel()):
        e = torch.zeros(r * n + b.numel(), dtype=torch.float64)
        e[k] = 1
        ga, gb = e[:r * n].view(r, n), e[r * n:].view_as(b)
        cols.append((s * (b @ ga + gb @ a)).flatten())
    sol = torch.linalg.lstsq(torch.stack(cols, 1), g.flatten()[:, None], driver="gelsd").solution[:, 0]
    ga, gb = sol[:r * n].view(r, n), sol[r * n:].view_as(b)
    return s * (b @ ga + gb @ a)


@pytest.mark.parametrize("x", ["sylvester", "zero"])
@pytest.mark.parametrize("zero_b", [False, True])
def test_lora_pro_equivalent_gradient_is_the_least_squares_one(x, zero_b):
    m, g = _pro_setup(zero_b)
    lora_pro_([m], x=x)
    a, b, s = m.lora_A.detach(), m.lora_B.detach(), m.scaling
    equivalent = s * (b @ m.lora_A.grad + m.lora_B.grad @ a)
    torch.testing.assert_close(equivalent, _least_squares_equivalent(m, g))
    plain = s * s * (b @ b.T @ g + g @ a.T @ a)  # LoRA's own equivalent gradient is farther from g
    assert (equivalent - g).norm() < (plain - g).norm()


def test_lora_pro_x_solves_the_sylvester_equation_and_minimises_the_distance_to_lora_gradients():
    m, g = _pro_setup()
    lora_ga, lora_gb = m.lora_A.grad.clone(), m.lora_B.grad.clone()
    lora_pro_([m], x="zero")
    za, zb = m.lora_A.grad.clone(), m.lora_B.grad.clone()
    m.lora_A.grad, m.lora_B.grad = lora_ga.clone(), lora_gb.clone()
    lora_pro_([m], x="sylvester")
    a, b = m.lora_A.detach(), m.lora_B.detach()
    # recover X from gA = gA(X=0) + X A  (A has full row rank)
    big_x = (m.lora_A.grad - za) @ torch.linalg.pinv(a)
    torch.testing.assert_close(zb - b @ big_x, m.lora_B.grad)
    s2 = m.scaling ** 2
    rhs = -(1 / s2) * torch.linalg.pinv(b.T @ b) @ lora_ga @ a.T
    torch.testing.assert_close(b.T @ b @ big_x + big_x @ a @ a.T, rhs)

    def distance(xx):
        return (za + xx @ a - lora_ga).square().sum() + (zb - b @ xx - lora_gb).square().sum()

    torch.manual_seed(3)
    for _ in range(5):
        assert distance(big_x) < distance(big_x + 1e-2 * torch.randn(2, 2, dtype=torch.float64))
    assert distance(big_x) < distance(torch.zeros(2, 2, dtype=torch.float64))


def test_lora_pro_batches_same_shape_adapters_like_one_at_a_time_and_refuses_missing_grads():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)).double()
    apply_lora(net, rank=2)
    with torch.no_grad():
        for m in (net[0], net[1], net[2]):
            m.lora_B.normal_()
    net(torch.randn(4, 6, dtype=torch.float64)).sum().backward()
    alone = []
    for m in (net[0], net[1], net[2]):
        saved = m.lora_A.grad.clone(), m.lora_B.grad.clone()
        lora_pro_(m)
        alone.append((m.lora_A.grad.clone(), m.lora_B.grad.clone()))
        m.lora_A.grad.copy_(saved[0]), m.lora_B.grad.copy_(saved[1])
    lora_pro_(net)
    for m, (ga, gb) in zip((net[0], net[1], net[2]), alone):
        torch.testing.assert_close(m.lora_A.grad, ga)
        torch.testing.assert_close(m.lora_B.grad, gb)
    net[1].lora_A.grad = None
    kept = net[0].lora_A.grad.clone()
    with pytest.raises(ValueError, match="needs gradients in A and B"):
        lora_pro_(net)
    assert torch.equal(net[0].lora_A.grad, kept)
    with pytest.raises(ValueError, match="x must be one of"):
        lora_pro_(net, x="paper")
