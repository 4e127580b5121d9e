"""Parameter gap after 200 steps between gradkit's optimizers and their reference packages (the numbers in
docs/optimizers.md): max over tensors of max|a - b| / max|b|, same model, data and hyperparameters.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/reference_parity.py

The model (Linear -> BatchNorm -> tanh -> Linear, seed 0) and the data (the first 512 digits training
examples in mini-batches of 64, in order) are the parity tests'. The references written from a paper's
equations (AdEMAMix's warm-ups, EXAdam's dynamic step size, diffGrad's official equations) live with
their tests in tests/optim, which assert those gaps; this script measures the installed packages only.
"""
from __future__ import annotations

import contextlib
import copy
import io

import adabelief_pytorch
import adamp
import pytorch_optimizer as po
import torch
import torch.nn.functional as F

import gradkit.optim as go
from gradkit.datasets import digits

STEPS, BATCH, EXAMPLES = 200, 64, 512


def smooth_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32, bias=False), torch.nn.BatchNorm1d(32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 10))


def train(model, opt, x, y) -> None:
    for step in range(STEPS):
        start = (step * BATCH) % x.shape[0]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[start:start + BATCH]), y[start:start + BATCH]).backward()
        opt.step()


def parity(make_ours, make_reference) -> float:
    split = digits("train")
    x, y = split.inputs[:EXAMPLES], split.targets[:EXAMPLES]
    ours = smooth_net()
    reference = copy.deepcopy(ours)
    train(ours, make_ours(ours.parameters()), x, y)
    train(reference, make_reference(reference.parameters()), x, y)
    return max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
               for a, b in zip(ours.parameters(), reference.parameters()))


def adabelief(p, **kw):
    with contextlib.redirect_stdout(io.StringIO()):
        return adabelief_pytorch.AdaBelief(p, print_change_log=False, **kw)


CASES = [
    ("AdamP (wd, nesterov)", "adamp.AdamP", lambda p: go.AdamP(p, lr=1e-2, weight_decay=1e-2, nesterov=True),
     lambda p: adamp.AdamP(p, lr=1e-2, weight_decay=1e-2, nesterov=True)),
    ("SGDP (momentum, dampening, wd)", "adamp.SGDP",
     lambda p: go.SGDP(p, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-3),
     lambda p: adamp.SGDP(p, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-3)),
    ("AdaBelief (defaults: rectify)", "adabelief_pytorch.AdaBelief", lambda p: go.AdaBelief(p, lr=1e-2),
     lambda p: adabelief(p, lr=1e-2)),
    ("Adan (proximal wd)", "pytorch_optimizer.Adan", lambda p: go.Adan(p, lr=1e-2, weight_decay=0.02),
     lambda p: po.Adan(p, lr=1e-2, weight_decay=0.02)),
    ("AdEMAMix (wd)", "pytorch_optimizer.AdEMAMix", lambda p: go.AdEMAMix(p, lr=1e-3, alpha=5.0, weight_decay=0.1),
     lambda p: po.AdEMAMix(p, lr=1e-3, alpha=5.0, weight_decay=0.1, weight_decouple=True, foreach=False)),
    ("Lion (wd)", "pytorch_optimizer.Lion", lambda p: go.Lion(p, lr=1e-3, weight_decay=0.1),
     lambda p: po.Lion(p, lr=1e-3, weight_decay=0.1)),
    ("EXAdam (wd)", "pytorch_optimizer.EXAdam", lambda p: go.EXAdam(p, lr=1e-3, weight_decay=0.1),
     lambda p: po.EXAdam(p, lr=1e-3, weight_decay=0.1)),
    ("diffGrad (wd)", "pytorch_optimizer.DiffGrad", lambda p: go.DiffGrad(p, lr=1e-3, weight_decay=1e-2),
     lambda p: po.DiffGrad(p, lr=1e-3, weight_decay=1e-2, weight_decouple=False)),
]


def main() -> None:
    print(f"{'case':<32}{'reference':<30}{'max rel. diff':>14}")
    for name, ref, ours, theirs in CASES:
        print(f"{name:<32}{ref:<30}{parity(ours, theirs):>14.1e}", flush=True)


if __name__ == "__main__":
    main()
