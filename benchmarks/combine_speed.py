"""Timings for gradkit.combine, printed as ratios measured in one run (no assertions).

1. Jacobian of m losses: one backward per loss vs one vectorised backward (is_grads_batched).
2. PCGrad in coefficient space (Gramian only) vs the per-task loop over full-size gradients.
3. UPGrad's batched active-set solver vs torchjd's UPGrad (quadprog, one QP per row), if installed.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/combine_speed.py
"""
from __future__ import annotations


import torch

from gradkit import combine
from _timing import best_of


def jacobian_timing(m: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, m))
    x = torch.randn(128, 64)
    y = torch.randn(128, m)
    params = list(model.parameters())

    def run(batched: bool):
        out = model(x)
        losses = ((out - y) ** 2).mean(0)
        combine.jacobian(list(losses), params, batched=batched)

    return best_of(lambda: run(False)), best_of(lambda: run(True))


def naive_pcgrad(jac: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    out = []
    for i in range(jac.shape[0]):
        g = jac[i].clone()
        for j in orders[i].tolist():
            if j != i:
                dot = g @ jac[j]
                if dot < 0:
                    g -= dot / (jac[j] @ jac[j]) * jac[j]
        out.append(g)
    return torch.stack(out).sum(0)


def main() -> None:
    torch.set_num_threads(1)
    print("1. Jacobian of m losses over a 64-256-256-m MLP (batch 128)")
    print("   m   loop (ms)  batched (ms)  loop/batched")
    for m in (2, 4, 8, 16):
        loop, batched = jacobian_timing(m)
        print(f"  {m:2d}   {1e3 * loop:8.2f}  {1e3 * batched:11.2f}  {loop / batched:11.2f}")

    print("\n2. PCGrad on an m x 1,000,000 Jacobian")
    print("   m   per-task loop (ms)  Gramian form (ms)  ratio")
    for m in (2, 4, 8):
        jac = torch.randn(m, 1_000_000)
        agg = combine.PCGrad(seed=0)
        orders = combine.PCGrad(seed=0)._orders(m)
        naive = best_of(lambda: naive_pcgrad(jac, orders), repeat=3, number=1)
        ours = best_of(lambda: agg(jac), repeat=3, number=1)
        print(f"  {m:2d}   {1e3 * naive:17.1f}  {1e3 * ours:16.1f}  {naive / ours:5.1f}")

    try:
        from torchjd.aggregation import UPGrad as ReferenceUPGrad
        ReferenceUPGrad()
    except Exception as err:  # noqa: BLE001 - the comparison is optional
        print(f"\n3. skipped (torchjd UPGrad unavailable: {err})")
        return
    print("\n3. UPGrad weights on an m x 10,000 Jacobian")
    print("   m   torchjd+quadprog (ms)  gradkit (ms)  ratio")
    for m in (2, 4, 8, 16, 32):
        jac = torch.randn(m, 10_000)
        ref, ours = ReferenceUPGrad(), combine.UPGrad()
        t_ref = best_of(lambda: ref(jac))
        t_ours = best_of(lambda: ours(jac))
        print(f"  {m:2d}   {1e3 * t_ref:20.2f}  {1e3 * t_ours:11.2f}  {t_ref / t_ours:5.2f}")


if __name__ == "__main__":
    main()
