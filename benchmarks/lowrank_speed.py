"""Optimizer step time of the low-rank family beside torch AdamW, pytorch-optimizer's GaLore/Fira and galore-torch.

    python benchmarks/lowrank_speed.py                    # d=128 and d=384 TinyLM, one thread, a few minutes
    python benchmarks/lowrank_speed.py --dims 128 --rounds 3   # a quick run

Every optimizer gets its own copy of ``gradkit.models.TinyLM`` (byte-level LLaMA-style LM; ``--dims`` gives the
sizes, 2 layers: d=128 is 0.5M parameters, d=384 about 10x that) holding the same gradients from one
backward pass, and only ``optimizer.step()`` is timed. The low-rank methods project the block matrices at
rank d/4 (SNSM at d/2, as it keeps one subspace moment instead of two) with the same subspace update
interval ``--period``; embeddings, head and norms keep full AdamW state in every implementation. Two "floor"
rows time the unavoidable arithmetic alone (see ``_Floor``): one projection matmul pass over the block matrices and
the SVD refresh's share of a step; GaLore does at least two passes plus the refresh, FRUGAL three. A round
times ``--period`` consecutive steps of each optimizer in turn (so every timed window holds exactly one
subspace refresh); rounds are interleaved, and the ratios to torch AdamW and to pytorch-optimizer's GaLore are the
median over rounds of each round's own ratio (the rows of one round ran seconds apart, so load from other
processes on a shared machine disturbs both sides of a ratio alike). The best and the median round's ms/step
are printed beside them. Not a test: nothing here is asserted.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import statistics
import sys
import time
import types

import torch
import torch.nn.functional as F

import gradkit.lowrank  # noqa: F401  (registers the optimizers)
from gradkit.bench.measure import device_name
from gradkit.models import TinyLM
from gradkit.registry import get_optimizer

PROJECTED = ("blocks.",)  # TinyLM's attention and MLP matrices; embed, head and norms keep full state


def split_groups(model, extra: dict) -> list[dict]:
    """Reference optimizers' param groups: the block matrices with the low-rank keys, the rest plain."""
    low = [p for n, p in model.named_parameters() if n.startswith(PROJECTED) and p.dim() == 2]
    ids = {id(p) for p in low}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest}, {"params": low, **extra}]


@functools.lru_cache(maxsize=None)  # loaded once: a second find_spec would meet the package stub below
def galore_torch_adamw():
    """galore-torch's AdamW, or None. Only its ``adamw`` module is loaded: the package ``__init__`` also imports
    the 8-bit and Adafactor variants (bitsandbytes, transformers); a missing transformers version check is stubbed."""
    spec = importlib.util.find_spec("galore_torch")
    if spec is None:
        return None
    try:
        importlib.import_module("transformers.utils.versions")
    except ImportError:
        stub = types.ModuleType("transformers.utils.versions")
        stub.require_version = lambda *args, **kwargs: None
        for name, module in (("transformers", types.ModuleType("transformers")),
                             ("transformers.utils", types.ModuleType("transformers.utils")),
                             ("transformers.utils.versions", stub)):
            sys.modules.setdefault(name, module)
    if "galore_torch" not in sys.modules:
        package = types.ModuleType("galore_torch")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["galore_torch"] = package
    return importlib.import_module("galore_torch.adamw").AdamW


def candidates(dim: int, period: int):
    rank = dim // 4
    lr = 1e-3

    def ours(name, **kw):
        return lambda m: get_optimizer(name)(m.named_parameters(), lr=lr, **kw)

    out = [
        ("torch AdamW", lambda m: torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.0, foreach=True)),
        ("gradkit FRUGAL svd", ours("frugal", density=0.25, projector="svd", update_freq=period)),
        ("gradkit FRUGAL random", ours("frugal", density=0.25, projector="random", update_freq=period)),
        ("gradkit GaLore", ours("galore", rank=rank, update_proj_gap=period)),
        ("gradkit Fira", ours("fira", rank=rank, update_proj_gap=period)),
        ("gradkit SVD-free", ours("svdfree", rank=rank, update_proj_gap=period)),
        ("gradkit SNSM (r=d/2)", ours("snsm", rank=2 * rank, update_proj_gap=period)),
    ]
    try:
        import pytorch_optimizer as po
    except ImportError:
        print("pytorch_optimizer not installed: its GaLore/Fira rows are left out")
    else:
        po_keys = dict(rank=rank, update_proj_gap=period, scale=0.25, projection_type="std")
        out += [("pytorch-optimizer GaLore", lambda m: po.GaLore(split_groups(m, po_keys), lr=lr)),
                ("pytorch-optimizer Fira", lambda m: po.Fira(split_groups(m, po_keys), lr=lr))]
    GaLoreAdamW = galore_torch_adamw()
    if GaLoreAdamW is None:
        print("galore-torch not installed: its row is left out")
    else:
        gt_keys = dict(rank=rank, update_proj_gap=period, scale=0.25, proj_type="std")
        out.append(("galore-torch GaLoreAdamW",
                    lambda m: GaLoreAdamW(split_groups(m, gt_keys), lr=lr, no_deprecation_warning=True)))
    return out


class _Floor:
    """Not an optimizer: a lower bound on every low-rank step, timed like one. ``"pass"``: one projection matmul
    per block matrix (``G Q^T`` or ``P^T G`` at rank ``r``; GaLore needs two such passes per step, FRUGAL and Fira
    three); ``"svd"``: the SVD of every block matrix's gradient once per ``period`` steps (the subspace refresh
    of GaLore, Fira and FRUGAL svd), so its per-step time is the refresh's share of a step."""

    def __init__(self, model, kind: str, rank: int, period: int):
        self.grads = [p.grad for n, p in model.named_parameters() if n.startswith(PROJECTED) and p.dim() == 2]
        self.bases = [torch.randn(rank, g.shape[1]) if g.shape[0] >= g.shape[1] else torch.randn(g.shape[0], rank)
                      for g in self.grads]
        self.kind, self.period, self.calls = kind, period, 0

    def step(self):
        if self.kind == "pass":
            for g, q in zip(self.grads, self.bases):
                g @ q.T if g.shape[0] >= g.shape[1] else q.T @ g
        elif self.calls % self.period == 0:
            for g in self.grads:
                torch.linalg.svd(g, full_matrices=False)
        self.calls += 1


def measure(dim: int, depth: int, period: int, rounds: int, only: list[str]) -> None:
    torch.manual_seed(0)
    source = TinyLM(dim=dim, depth=depth, context=128)
    x = torch.randint(0, 256, (16, 128))
    F.cross_entropy(source(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten()).backward()
    runs = []
    for label, make in candidates(dim, period):
        if only and not any(s.lower() in label.lower() for s in only):
            continue
        model = TinyLM(dim=dim, depth=depth, context=128)
        model.load_state_dict(source.state_dict())
        for p, q in zip(model.parameters(), source.parameters()):
            p.grad = q.grad.clone()
        runs.append((label, make(model), []))
    for label, kind in (("floor: one projection pass", "pass"), ("floor: SVD refresh share", "svd")):
        if not only or any(s.lower() in label.lower() for s in only):
            runs.append((label, _Floor(source, kind, dim // 4, period), []))
    n = sum(p.numel() for p in source.parameters())
    for _ in range(rounds):
        for label, opt, times in runs:
            start = time.perf_counter()
            for _ in range(period):
                opt.step()
            times.append((time.perf_counter() - start) * 1e3 / period)
    per_round = {label: times for label, _, times in runs}

    def ratio(label, ref):  # the median of the per-round ratios: both sides of each ratio saw the same load
        if ref not in per_round:
            return "-"
        return f"{statistics.median(a / b for a, b in zip(per_round[label], per_round[ref])):.2f}"

    print(f"\nTinyLM d={dim} depth={depth} ({n / 1e6:.2f}M params), rank d/4={dim // 4}, update interval {period}, "
          f"{rounds} rounds of {period} steps")
    print(f"{'optimizer':<28}{'best ms':>9}{'median':>9}{'/ AdamW':>9}{'/ po GaLore':>13}")
    for label, _, times in runs:
        print(f"{label:<28}{min(times):>9.2f}{statistics.median(times):>9.2f}{ratio(label, 'torch AdamW'):>9}"
              f"{ratio(label, 'pytorch-optimizer GaLore'):>13}", flush=True)
    if "pytorch-optimizer Fira" in per_round and "gradkit Fira" in per_round:
        print(f"gradkit Fira / pytorch-optimizer Fira: {ratio('gradkit Fira', 'pytorch-optimizer Fira')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 384])
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--period", type=int, default=20, help="subspace update interval of every method")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    parser.add_argument("--only", nargs="*", default=[], help="substrings of the rows to run")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{device_name()}, torch={torch.__version__} threads={torch.get_num_threads()}")
    for dim in args.dims:
        measure(dim, args.depth, args.period, args.rounds, args.only)


if __name__ == "__main__":
    main()
