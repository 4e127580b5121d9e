"""Amortised step time of gradkit's SOAP, Shampoo and PSGD Kron relative to the peer implementations that
install here, on the stdlib-LM arena model (TinyLM, the task's default size), CPU or GPU.

    python benchmarks/frontier_step_time.py                     # 10 interleaved rounds of 20 steps each
    python benchmarks/frontier_step_time.py --rounds 20 --steps 40
    python benchmarks/frontier_step_time.py --only SOAP SOAP/heavyball Shampoo     # skip kron-torch (it compiles: minutes on CPU)
    python benchmarks/frontier_step_time.py --only "PSGD Kron" --eager-peers   # kron-torch uncompiled

Gradients of one real batch are computed once and copied into ``p.grad`` before every step (both sides). Each round runs ``--steps`` consecutive steps
of every optimizer in turn (so basis refreshes and inverse roots, every 10 steps for all of them, are
included: the amortised cost), and the figure is the median over rounds of the round's mean step time.
Prints one ratio per pair (gradkit / peer, < 1 is faster), measured in one run. Not a test.

Pairs (the same algorithm and hyperparameters on both sides):
  SOAP        gradkit SOAP                          vs pytorch_optimizer.SOAP (a port of the official code)
  Shampoo     gradkit Shampoo, Gupta et al.'s form  vs pytorch_optimizer.Shampoo (roots every 10 steps)
  SOAP/heavyball  gradkit SOAP                      vs heavyball.SOAP (helpers run eagerly; basis refresh every 10
              steps, no refresh schedule; heavyball keeps both moments in the rotated space)
  PSGD Kron   gradkit PSGDKron                      vs kron_torch.Kron (its helpers compiled by torch.compile)
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import torch

import gradkit
from gradkit.bench.tasks.registry import make_task


def lm_params(device: str) -> list[torch.nn.Parameter]:
    task = make_task("stdlib-lm")
    data = task.load(device)
    torch.manual_seed(0)
    model = task.build_model().to(device)
    batch = task.sample(data, torch.Generator().manual_seed(0))
    task.losses(model, batch).backward()
    return [p for p in model.parameters() if p.requires_grad]


def clone_params(params):
    out = []
    for p in params:
        q = torch.nn.Parameter(p.detach().clone())
        q._bench_grad = p.grad.detach().clone()
        out.append(q)
    return out


def pairs():
    import pytorch_optimizer as po

    original = dict(betas=(0.0, 1.0), grafting="none", use_bias_correction=False, merge_dims=False)
    out = [
        ("SOAP", lambda p: gradkit.optim.SOAP(p, lr=1e-4), lambda p: po.SOAP(p, lr=1e-4)),
        ("Shampoo", lambda p: gradkit.optim.Shampoo(p, lr=1e-4, epsilon=1e-6, precondition_frequency=10, **original),
         lambda p: po.Shampoo(p, lr=1e-4, matrix_eps=1e-6, preconditioning_compute_steps=10)),
    ]
    try:
        import heavyball

        heavyball.utils.compile_mode = None  # its helpers are torch.compile'd by default: eager on CPU
        heavyball.utils.compile_mode_recommended_to_none = None
        out.append(("SOAP/heavyball", lambda p: gradkit.optim.SOAP(p, lr=1e-4),
                    lambda p: heavyball.SOAP(p, lr=1e-4, betas=(0.95, 0.95), weight_decay=0.01, precondition_frequency=10,
                                             merge_dims=False, use_precond_schedule=False)))
    except ImportError:
        pass
    try:
        import kron_torch

        out.append(("PSGD Kron", lambda p: gradkit.optim.PSGDKron(p, lr=1e-5), lambda p: kron_torch.Kron(p, lr=1e-5)))
    except ImportError:
        pass
    return out


def round_ms(opt, steps: int, device: str) -> float:
    grads = [(p, p._bench_grad) for group in opt.param_groups for p in group["params"]]
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        for p, g in grads:  # a fresh copy each step: heavyball writes into p.grad and then drops it
            p.grad = g.clone()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3 / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="steps per round (a multiple of 10 amortises refreshes)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="*", default=None, help="pair names to run (default: all), e.g. SOAP Shampoo")
    parser.add_argument("--eager-peers", action="store_true",
                        help="run torch.compile-decorated peer code (kron-torch) eagerly: no compilation")
    args = parser.parse_args()
    if args.eager_peers:
        torch._dynamo.config.disable = True
    base = lm_params(args.device)
    n = sum(p.numel() for p in base)
    print(f"stdlib-lm TinyLM: {len(base)} tensors, {n / 1e6:.2f}M params; device={args.device} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    print(f"{'pair':<15} {'gradkit ms':>11} {'peer ms':>9} {'ratio':>6}")
    for name, ours, peer in pairs():
        if args.only is not None and name not in args.only:
            continue
        with contextlib.redirect_stdout(io.StringIO()):  # kron-torch prints its buffer sizes
            optimizers = [ours(clone_params(base)), peer(clone_params(base))]
            for opt in optimizers:  # warm-up: state, first refresh, compilation
                round_ms(opt, args.steps, args.device)
            times = [[], []]
            for _ in range(args.rounds):
                for k, opt in enumerate(optimizers):
                    times[k].append(round_ms(opt, args.steps, args.device))
        a, b = statistics.median(times[0]), statistics.median(times[1])
        print(f"{name:<15} {a:11.2f} {b:9.2f} {a / b:6.2f}")


if __name__ == "__main__":
    main()
