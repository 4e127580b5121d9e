from __future__ import annotations

import pytest
import torch

from gradkit import combine
from gradkit.combine import Bloop


def reference_bloop(mains, auxs, lbda, ema, eps=1e-7):
    avg = mains[0].clone()
    out = []
    for g, h in zip(mains, auxs):
        avg = avg + ema * (g - avg)
        out.append(g + lbda * (h - (avg @ h) / (avg @ avg + eps) * avg))
    return out


def test_matches_the_recursion_over_several_steps():
    gen = torch.Generator().manual_seed(0)
    mains = [torch.randn(12, generator=gen, dtype=torch.float64) for _ in range(5)]
    auxs = [torch.randn(12, generator=gen, dtype=torch.float64) for _ in range(5)]
    agg = Bloop(aux_weight=0.3, ema=0.2)
    got = [agg(torch.stack([g, h])) for g, h in zip(mains, auxs)]
    for a, b in zip(got, reference_bloop(mains, auxs, 0.3, 0.2)):
        torch.testing.assert_close(a, b)
    assert agg.steps == 5


def test_auxiliary_part_is_orthogonal_to_the_ema():
    gen = torch.Generator().manual_seed(1)
    agg = Bloop(aux_weight=1.0, ema=0.5, eps=0.0)
    for _ in range(4):
        g, h = torch.randn(2, 8, generator=gen, dtype=torch.float64)
        update = agg(torch.stack([g, h]))
        assert abs(float((update - g) @ agg.main_ema)) < 1e-10


def test_state_dict_round_trip_continues_identically():
    gen = torch.Generator().manual_seed(2)
    jacs = [torch.randn(2, 6, generator=gen) for _ in range(4)]
    a = Bloop(ema=0.3)
    for j in jacs[:2]:
        a(j)
    saved = a.state_dict()
    b = Bloop(ema=0.3)
    b.load_state_dict(saved)
    for j in jacs[2:]:
        torch.testing.assert_close(a(j), b(j))
    torch.testing.assert_close(a.state_dict()["main_ema"], b.state_dict()["main_ema"])
    assert saved["main_ema"] is not a.main_ema  # a copy, not the live buffer


def test_through_backward_and_diagnostics():
    w = torch.zeros(3, requires_grad=True)
    agg = combine.get_aggregator("bloop", aux_weight=1.0, ema=1.0, eps=0.0)
    info = combine.backward([(w * torch.tensor([1.0, 0.0, 0.0])).sum(), (w * torch.tensor([-1.0, 1.0, 0.0])).sum()], [w], agg)
    torch.testing.assert_close(w.grad, torch.tensor([1.0, 1.0, 0.0]))
    assert info.extra["projection_ratio"] == pytest.approx(-1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="ema"):
        Bloop(ema=0.0)
    with pytest.raises(ValueError, match="init"):
        Bloop(init="random")
    with pytest.raises(ValueError, match="exactly 2"):
        Bloop()(torch.ones(3, 4))
    agg = Bloop()
    agg(torch.ones(2, 4))
    with pytest.raises(ValueError, match="entries"):
        agg(torch.ones(2, 5))
    with pytest.raises(ValueError, match="keys"):
        agg.load_state_dict({"ema": None})
    w = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="exactly 2"):
        combine.backward([w.sum(), w.sum(), w.sum()], [w], Bloop())
    assert w.grad is None
