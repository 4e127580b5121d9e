"""Optimizer step time and communication per step under FSDP2, beside torch.optim.AdamW.

    OMP_NUM_THREADS=1 PYTHONPATH=src torchrun --standalone --nproc-per-node 2 benchmarks/distributed_step.py

gloo on CPU; NCCL with one GPU per rank when CUDA is available (``--backend`` overrides). The model
is a stack of transformer-shaped MLP blocks (LayerNorm, d x 4d, GELU, 4d x d) and a d x 10 head,
each block and the whole model wrapped with ``fully_shard``, so every parameter is a DTensor sharded
on dim 0 and each optimizer sees only its rank's shards.

Per optimizer, rank 0 prints a markdown row:
- the median ``optimizer.step()`` time with the spread (25th-75th percentile) over ``--steps``
  timed steps (ranks aligned by a barrier before each), and the ratio of medians to torch.optim
  AdamW measured in the same run (the CPU-independent figure);
- the collectives issued inside ``optimizer.step()`` and the bytes each rank sends for them (not
  for a compiled ``fused=True`` step, which cannot run under the counting mode; its program works on
  the local shards).

How communication is counted: one extra step runs under a ``TorchDispatchMode`` that sees every
c10d collective (the process-group ops FSDP2 issues, and the functional collectives DTensor issues
when it redistributes; a DTensor op is first handed back to DTensor, as torch's ``CommDebugMode``
does, so the mode sees the collectives it desugars into). For each collective the logical size S
in bytes is read from its tensors (the gathered output of an all-gather, the input of a
reduce-scatter, all-reduce, all-to-all or broadcast) and the bytes one rank sends are those of the
ring algorithms: S (W - 1) / W for all-gather, reduce-scatter, all-to-all and broadcast, and
2 S (W - 1) / W for all-reduce, with W the group size. The forward and backward pass (FSDP2's own
all-gathers and reduce-scatters, the same for every optimizer) is counted once and printed first.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import gradkit.optim  # noqa: F401  (registers the optimizers)
from gradkit.bench.measure import device_name
from gradkit.registry import get_optimizer

# label -> (factory name or "torch.adamw", keyword arguments)
OPTIMIZERS = {
    "torch.optim.AdamW": ("torch.adamw", {"lr": 1e-3, "weight_decay": 0.1}),
    "gradkit AdamW": ("adamw", {"lr": 1e-3, "weight_decay": 0.1}),
    "gradkit AdamW fused": ("adamw", {"lr": 1e-3, "weight_decay": 0.1, "fused": True}),
    "gradkit Adam": ("adam", {"lr": 1e-3}),
    "gradkit Lion": ("lion", {"lr": 1e-4, "weight_decay": 0.1}),
    "gradkit AdEMAMix": ("ademamix", {"lr": 1e-3}),
    "gradkit Adan": ("adan", {"lr": 1e-3}),
    "gradkit AdamP": ("adamp", {"lr": 1e-3}),
    "gradkit Muon (fp32 Newton-Schulz), owner-based": ("muon", {"lr": 0.02, "ns_dtype": torch.float32}),
    "gradkit Muon (fp32 Newton-Schulz), every matrix on every rank": ("muon", {"lr": 0.02, "ns_dtype": torch.float32}),
    "gradkit FRUGAL (block projector)": ("frugal", {"lr": 1e-3, "projector": "block", "density": 0.25}),
    "gradkit GaLore, owner-based": ("galore", {"lr": 1e-3, "rank": 32}),
}
# Labels run through the scheme the owner-based one replaces: every rank gathers every whole matrix (DTensor's
# implicit redistribution) and repeats every Newton-Schulz iteration.
EVERYWHERE = {"gradkit Muon (fp32 Newton-Schulz), every matrix on every rank"}

ALL_GATHER = ("allgather", "all_gather")
REDUCE_SCATTER = ("reduce_scatter",)
ALL_REDUCE = ("allreduce", "all_reduce")
ALL_TO_ALL = ("alltoall", "all_to_all")
BROADCAST = ("broadcast",)


def _bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(_bytes(o) for o in obj)
    return 0


def _group_size(func_name: str, args, world_size: int) -> int:
    # Functional collectives name their group; c10d ops carry the ProcessGroup object.
    for a in args:
        if isinstance(a, dist.ProcessGroup):
            return a.size()
        if isinstance(a, str) and func_name.startswith("_c10d_functional"):
            try:
                return dist.distributed_c10d._resolve_process_group(a).size()
            except Exception:  # an unregistered name: fall back to the world
                return world_size
    return world_size


class CommunicationCounter(TorchDispatchMode):
    """Counts collectives and the bytes this rank sends for them (ring algorithms), by kind."""

    def __init__(self, world_size: int):
        super().__init__()
        self.world_size = world_size
        self.calls: dict[str, int] = {}
        self.sent_bytes = 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.distributed.tensor import DTensor

        if any(t is DTensor for t in types):
            return NotImplemented  # let DTensor desugar into the collectives counted below
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(func)
        if func.namespace not in ("c10d", "_c10d_functional"):
            return out
        op = name.split(".")[1]
        w = _group_size(name, args, self.world_size)
        if any(k in op for k in ALL_GATHER):
            # c10d writes into its first argument; the functional form returns the result.
            size, factor = _bytes(args[0] if func.namespace == "c10d" else out), (w - 1) / w
        elif any(k in op for k in REDUCE_SCATTER):
            size, factor = _bytes(args[1] if func.namespace == "c10d" else args[0]), (w - 1) / w
        elif any(k in op for k in ALL_REDUCE):
            size, factor = _bytes(args[0]), 2 * (w - 1) / w
        elif any(k in op for k in ALL_TO_ALL) and func.namespace == "c10d" and op == "alltoall_base_" and args[3]:
            # uneven splits (the owner-based scheme): exactly what leaves this rank
            splits, rank = list(args[3]), dist.get_rank(args[4]) if isinstance(args[4], dist.ProcessGroup) else dist.get_rank()
            size, factor = (sum(splits) - splits[rank]) * args[1].element_size(), 1.0
        elif any(k in op for k in ALL_TO_ALL):
            size, factor = _bytes(args[1] if func.namespace == "c10d" else args[0]), (w - 1) / w
        elif any(k in op for k in BROADCAST):
            size, factor = _bytes(args[0]), (w - 1) / w
        else:
            return out  # waits, barriers, wrappers: no payload
        kind = next(k for k in ("all_gather", "reduce_scatter", "all_reduce", "all_to_all", "broadcast")
                    if k.replace("_", "") in op.replace("_", ""))
        self.calls[kind] = self.calls.get(kind, 0) + 1
        self.sent_bytes += size * factor
        return out


def build_model(d: int, blocks: int, device) -> nn.Module:
    layers = []
    for _ in range(blocks):
        layers.append(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)))
    layers.append(nn.Linear(d, 10))
    return nn.Sequential(*layers).to(device)


def shard(model: nn.Module, mesh) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    for block in model:
        fully_shard(block, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def make_optimizer(label: str, model: nn.Module):
    name, kwargs = OPTIMIZERS[label]
    if name == "torch.adamw":
        return torch.optim.AdamW(model.parameters(), **kwargs)
    params = model.named_parameters() if name == "muon" else model.parameters()
    return get_optimizer(name)(params, **kwargs)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()


def measure(label, args, mesh, device, world_size):
    torch.manual_seed(0)
    model = shard(build_model(args.dim, args.blocks, device), mesh)
    opt = make_optimizer(label, model)
    g = torch.Generator().manual_seed(1 + dist.get_rank())
    x = torch.randn(args.batch, args.dim, generator=g).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(device)
    for _ in range(args.warmup):
        train_step(model, opt, x, y)
        opt.step()
    times = []
    for _ in range(args.steps):
        train_step(model, opt, x, y)
        sync(device)
        dist.barrier()
        start = time.perf_counter()
        opt.step()
        sync(device)
        times.append(time.perf_counter() - start)
    train_step(model, opt, x, y)
    counter = CommunicationCounter(world_size)
    try:
        with counter:
            opt.step()
    except Exception:  # a compiled (fused=True) step cannot run under a dispatch mode
        counter = None
    if counter is not None:  # the owners send unevenly: the mean and the largest over the ranks
        sent = torch.tensor([counter.sent_bytes], dtype=torch.float64)
        gathered = [torch.zeros_like(sent) for _ in range(world_size)]
        dist.all_gather(gathered, sent)
        counter.mean_bytes = float(torch.cat(gathered).mean())
        counter.max_bytes = float(torch.cat(gathered).max())
    return times, counter


def measure_scheme(label, args, mesh, device, world_size):
    """``measure``, through the scheme the label names (EVERYWHERE: whole-matrix work on the DTensors)."""
    if label not in EVERYWHERE:
        return measure(label, args, mesh, device, world_size)
    from gradkit.transforms.trust_region import ScaleByTrustRegion

    owner = ScaleByTrustRegion.__dict__["owner_steppable"]
    ScaleByTrustRegion.owner_steppable = False
    try:
        return measure(label, args, mesh, device, world_size)
    finally:
        ScaleByTrustRegion.owner_steppable = owner


def fwd_bwd_counter(args, mesh, device, world_size):
    torch.manual_seed(0)
    model = shard(build_model(args.dim, args.blocks, device), mesh)
    x = torch.randn(args.batch, args.dim).to(device)
    y = torch.randint(0, 10, (args.batch,)).to(device)
    counter = CommunicationCounter(world_size)
    with counter:
        nn.functional.cross_entropy(model(x), y).backward()
    return model, counter


def _sent_text(counter) -> str:
    if counter is None:
        return "-"
    return f"{counter.mean_bytes / 2**20:.3f} ({counter.max_bytes / 2**20:.3f})"


def calls_text(counter) -> str:
    if counter is None:
        return "not counted (compiled step)"
    return ", ".join(f"{n} {k.replace('_', '-')}" for k, n in sorted(counter.calls.items())) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32, help="examples per rank")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--backend", choices=("gloo", "nccl"), default=None)
    parser.add_argument("--only", nargs="*", default=None, help="labels (substrings) of the optimizers to run")
    args = parser.parse_args()

    backend = args.backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device.type, (world_size,))
    model, fb = fwd_bwd_counter(args, mesh, device, world_size)
    numel = sum(p.numel() for p in model.parameters())
    if rank == 0:
        where = device_name(device)
        print(f"FSDP2, {world_size} ranks, {backend}, {where}, torch {torch.__version__}, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
        print(f"model: {args.blocks} blocks of d={args.dim} (+ head), {numel:,} parameters (float32), "
              f"batch {args.batch} per rank")
        print(f"forward + backward: {calls_text(fb)}; {fb.sent_bytes / 2**20:.2f} MiB sent per rank")
        print()
        print("| optimizer | step ms, median (25-75%) | / torch AdamW | collectives in step() | "
              "MiB sent per rank per step, mean (largest) |")
        print("|---|---|---|---|---|")
    labels = [lbl for lbl in OPTIMIZERS if args.only is None or any(s.lower() in lbl.lower() for s in args.only)]
    baseline = None
    for label in labels:
        try:
            times, counter = measure_scheme(label, args, mesh, device, world_size)
        except Exception as err:  # the same error on every rank: report it as the row
            if rank == 0:
                first = f"{type(err).__name__}: {err}".splitlines()[0]
                print(f"| {label} | fails: {first[:110]} | | | |")
            continue
        median = statistics.median(times)
        q = statistics.quantiles(times, n=4)
        if label == "torch.optim.AdamW":
            baseline = median
        ratio = f"{median / baseline:.2f}" if baseline else "-"
        if rank == 0:
            print(f"| {label} | {median * 1e3:.2f} ({q[0] * 1e3:.2f}-{q[2] * 1e3:.2f}) | {ratio} | "
                  f"{calls_text(counter)} | {_sent_text(counter)} |", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
