"""Step time of AdamP, SGDP, AdaBelief, Adan, AdEMAMix, Lion, EXAdam and diffGrad relative to their
reference implementations (official packages or pytorch_optimizer, its foreach path where it has one).

    python benchmarks/reference_step_time.py                       # ~2M params, random gradients
    python benchmarks/reference_step_time.py --tangent             # gradients orthogonal to every weight row:
                                                                 # AdamP/SGDP project every matrix

Prints one ratio per optimizer (gradkit / reference, < 1 is faster), measured in one run with
interleaved repetitions. Also AdamP / gradkit Adam: the cost of the radial projection. Not a test.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics

import torch

import gradkit
from step_time import median_step_ms, model_params


def params(total: int, device: str, tangent: bool) -> list[torch.nn.Parameter]:
    ps = model_params(total, device)
    if tangent:
        with torch.no_grad():
            for p in ps:
                if p.dim() > 1:
                    w = p.view(p.shape[0], -1)
                    g = p.grad.view(p.shape[0], -1)
                    g -= (g * w).sum(1, keepdim=True) / (w * w).sum(1, keepdim=True) * w
    return ps


def references():
    import adabelief_pytorch
    import adamp
    import pytorch_optimizer as po

    def adabelief(p):
        with contextlib.redirect_stdout(io.StringIO()):
            return adabelief_pytorch.AdaBelief(p, lr=1e-3, weight_decay=1e-2, print_change_log=False)

    go = gradkit.optim
    return [
        ("AdamP", lambda p: go.AdamP(p, lr=1e-3, weight_decay=1e-2), lambda p: adamp.AdamP(p, lr=1e-3, weight_decay=1e-2)),
        ("SGDP", lambda p: go.SGDP(p, lr=1e-2, momentum=0.9, weight_decay=1e-4),
         lambda p: adamp.SGDP(p, lr=1e-2, momentum=0.9, weight_decay=1e-4)),
        ("AdaBelief", lambda p: go.AdaBelief(p, lr=1e-3, weight_decay=1e-2), adabelief),
        ("Adan", lambda p: go.Adan(p, lr=1e-3, weight_decay=0.02),
         lambda p: po.Adan(p, lr=1e-3, weight_decay=0.02, foreach=True)),
        ("AdEMAMix", lambda p: go.AdEMAMix(p, lr=1e-3, weight_decay=0.1),
         lambda p: po.AdEMAMix(p, lr=1e-3, weight_decay=0.1, weight_decouple=True, foreach=True)),
        ("Lion", lambda p: go.Lion(p, lr=1e-4, weight_decay=0.1), lambda p: po.Lion(p, lr=1e-4, weight_decay=0.1, foreach=True)),
        ("EXAdam", lambda p: go.EXAdam(p, lr=1e-3), lambda p: po.EXAdam(p, lr=1e-3, foreach=True)),
        ("DiffGrad", lambda p: go.DiffGrad(p, lr=1e-3), lambda p: po.DiffGrad(p, lr=1e-3, foreach=True)),
        ("AdamP/Adam", lambda p: go.AdamP(p, lr=1e-3), lambda p: go.Adam(p, lr=1e-3)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=int, default=2_000_000, help="approximate parameter count")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tangent", action="store_true", help="make every matrix's gradient tangent to it")
    parser.add_argument("--only", nargs="*", help="run only these rows (e.g. AdamP/Adam)")
    args = parser.parse_args()
    n = sum(p.numel() for p in model_params(args.params, "cpu"))
    print(f"device={args.device} threads={torch.get_num_threads()} params={n / 1e6:.1f}M tangent={args.tangent} "
          f"torch={torch.__version__}")
    print(f"{'optimizer':<12}{'gradkit ms':>12}{'reference ms':>14}{'ratio':>8}")
    for name, ours, theirs in references():
        if args.only and name not in args.only:
            continue
        opt_a = ours(params(args.params, args.device, args.tangent))
        opt_b = theirs(params(args.params, args.device, args.tangent))
        a, b = [], []
        for _ in range(args.rounds):
            a += median_step_ms(opt_a, args.device, 3)
            b += median_step_ms(opt_b, args.device, 3)
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{name:<12}{ma:>12.2f}{mb:>14.2f}{ma / mb:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
