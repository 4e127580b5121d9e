"""Parameter gap after 200 steps between gradkit's optimizers and their references (the numbers in
docs/optimizers_a.md): max over tensors of max|a - b| / max|b|, same model, data and hyperparameters.

    python benchmarks/optim_a_parity.py

Uses the model, data and reference loops of tests/optim (the tests assert each gap <= 1e-5).
"""
from __future__ import annotations

import contextlib
import io
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "optim"))

import adabelief_pytorch  # noqa: E402
import adamp  # noqa: E402
import pytorch_optimizer as po  # noqa: E402
from _optim_a_support import parity  # noqa: E402
from test_ademamix import PaperAdEMAMix  # noqa: E402
from test_diffgrad import OfficialEquations  # noqa: E402
from test_exadam import PaperEXAdam  # noqa: E402

import gradkit.optim as go  # noqa: E402


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
    ("AdEMAMix (warm-ups)", "paper equations", lambda p: go.AdEMAMix(p, lr=1e-3, alpha=5.0, weight_decay=0.1,
                                                                       alpha_warmup=150, beta3_warmup=100),
     lambda p: PaperAdEMAMix(p, lr=1e-3, betas=(0.9, 0.999, 0.9999), alpha=5.0, weight_decay=0.1, t_alpha=150,
                             t_beta3=100)),
    ("Lion (wd)", "pytorch_optimizer.Lion", lambda p: go.Lion(p, lr=1e-3, weight_decay=0.1),
     lambda p: po.Lion(p, lr=1e-3, weight_decay=0.1)),
    ("EXAdam (wd)", "pytorch_optimizer.EXAdam", lambda p: go.EXAdam(p, lr=1e-3, weight_decay=0.1),
     lambda p: po.EXAdam(p, lr=1e-3, weight_decay=0.1)),
    ("EXAdam (dynamic step size)", "paper equations", lambda p: go.EXAdam(p, lr=1e-3, dynamic_step_size=True),
     lambda p: PaperEXAdam(p, lr=1e-3)),
    ("diffGrad (wd)", "official equations", lambda p: go.DiffGrad(p, lr=1e-3, weight_decay=1e-2),
     lambda p: OfficialEquations(p, lr=1e-3, weight_decay=1e-2)),
    ("diffGrad (wd)", "pytorch_optimizer.DiffGrad", lambda p: go.DiffGrad(p, lr=1e-3, weight_decay=1e-2),
     lambda p: po.DiffGrad(p, lr=1e-3, weight_decay=1e-2, weight_decouple=False)),
]


def main() -> None:
    print(f"{'case':<32}{'reference':<30}{'max rel. diff':>14}")
    for name, ref, ours, theirs in CASES:
        print(f"{name:<32}{ref:<30}{parity(ours, theirs):>14.1e}", flush=True)


if __name__ == "__main__":
    main()
