"""The parity table of docs/frontier.md: largest relative parameter difference after 50 steps of the
smooth CNN (benchmarks/frontier_references.py, shared with the tests) between each gradkit optimizer and its reference.

    python benchmarks/frontier_parity.py          # prints a markdown table (about two minutes on one core)

The same comparisons are asserted (<= 1e-5) by the tests named in the last column.
"""
from __future__ import annotations

import contextlib
import io

import adopt
import dadaptation
import kron_torch
import prodigyopt
import pytorch_optimizer as po
import schedulefree
import torch
from frontier_references import (
    OfficialLaProp, OfficialMARS, PaperCautiousAdamW, cnn_parity, max_relative_difference, seeded_run,
)

from gradkit import optim


def train_mode(cls, **kw):
    def make(p):
        opt = cls(p, **kw)
        opt.train()
        return opt
    return make


ORIGINAL = dict(betas=(0.0, 1.0), grafting="none", use_bias_correction=False, merge_dims=False)
ROWS = [
    ("Schedule-Free SGD", "schedulefree.SGDScheduleFree", lambda: cnn_parity(
        lambda p: optim.ScheduleFreeSGD(p, lr=0.05), train_mode(schedulefree.SGDScheduleFree, lr=0.05)),
     "test_schedule_free.py::test_sgd_matches_official"),
    ("Schedule-Free AdamW", "schedulefree.AdamWScheduleFree", lambda: cnn_parity(
        lambda p: optim.ScheduleFreeAdamW(p, lr=1e-3), train_mode(schedulefree.AdamWScheduleFree, lr=1e-3)),
     "test_schedule_free.py::test_adamw_matches_official"),
    ("ADOPT", "adopt.ADOPT (torch-adopt)", lambda: cnn_parity(
        lambda p: optim.ADOPT(p, lr=1e-3), lambda p: adopt.ADOPT(p, lr=1e-3)),
     "test_frontier_tricks.py::test_adopt_matches_official"),
    ("Prodigy (lr 0.1)", "prodigyopt.Prodigy", lambda: cnn_parity(
        lambda p: optim.Prodigy(p, lr=0.1), lambda p: prodigyopt.Prodigy(p, lr=0.1)),
     "test_parameter_free.py::test_prodigy_matches_official"),
    ("D-Adapt Adam (lr 0.1)", "dadaptation.DAdaptAdam", lambda: cnn_parity(
        lambda p: optim.DAdaptAdam(p, lr=0.1), lambda p: dadaptation.DAdaptAdam(p, lr=0.1)),
     "test_parameter_free.py::test_dadapt_adam_matches_official"),
    ("PSGD Kron", "kron_torch.Kron", lambda: max_relative_difference(
        seeded_run(lambda p: optim.PSGDKron(p, lr=1e-3, seed=None)), seeded_run(lambda p: kron_torch.Kron(p, lr=1e-3))),
     "test_psgd_kron.py::test_matches_kron_torch"),
    ("SOAP (no decay)", "pytorch_optimizer.SOAP", lambda: cnn_parity(
        lambda p: optim.SOAP(p, lr=1e-3, weight_decay=0.0), lambda p: po.SOAP(p, lr=1e-3, weight_decay=0.0)),
     "test_soap.py::test_matches_pytorch_optimizer"),
    ("Shampoo (Gupta et al. form, eps 1e-3)", "pytorch_optimizer.Shampoo", lambda: cnn_parity(
        lambda p: optim.Shampoo(p, lr=1e-3, epsilon=1e-3, **ORIGINAL), lambda p: po.Shampoo(p, lr=1e-3, matrix_eps=1e-3)),
     "test_shampoo.py::test_original_shampoo_matches_pytorch_optimizer"),
    ("MARS-AdamW", "official update (test)", lambda: cnn_parity(
        lambda p: optim.MARS(p, lr=1e-3, optimize_1d=True), lambda p: OfficialMARS(p, lr=1e-3)),
     "test_frontier_tricks.py::test_mars_matches_the_official_update"),
    ("LaProp", "official update (test)", lambda: cnn_parity(
        lambda p: optim.LaProp(p, lr=1e-3), lambda p: OfficialLaProp(p, lr=1e-3)),
     "test_frontier_tricks.py::test_laprop_matches_the_official_update"),
    ("Cautious AdamW (eps ~ 0)", "paper's Algorithm 2 (test)", lambda: cnn_parity(
        lambda p: optim.CautiousAdamW(p, lr=1e-3, eps=1e-30, weight_decay=0.0),
        lambda p: PaperCautiousAdamW(p, lr=1e-3, eps=1e-30)),
     "test_frontier_tricks.py::test_cautious_adamw_matches_the_papers_algorithm"),
    ("Cautious Lion", "pytorch_optimizer.Lion(cautious=True)", lambda: cnn_parity(
        lambda p: optim.CautiousLion(p, lr=1e-3, weight_decay=0.1), lambda p: po.Lion(p, lr=1e-3, weight_decay=0.1, cautious=True)),
     "test_frontier_tricks.py::test_cautious_lion_matches_pytorch_optimizer"),
]


def heavyball_rows() -> list:
    """heavyball's versions (helpers run eagerly), at eps 1e-30 (heavyball: max(sqrt(v_hat), eps)). MARS with
    gamma mapped to heavyball's coefficient; Cautious, SOAP and PSGD Kron differ by design (docs/frontier.md)."""
    try:
        import heavyball
    except ImportError:
        return []
    heavyball.utils.compile_mode = None
    heavyball.utils.compile_mode_recommended_to_none = None
    e = 1e-30
    mapped = 0.025 * (1 - 0.95) / (1 - 0.025)
    return [
        ("MARS-AdamW (gamma mapped, eps ~ 0)", "heavyball.AdamW(mars=True)", lambda: cnn_parity(
            lambda p: optim.MARS(p, lr=1e-3, eps=e, gamma=mapped, optimize_1d=True),
            lambda p: heavyball.AdamW(p, lr=1e-3, betas=(0.95, 0.99), eps=e, weight_decay=0.0, mars=True, mars_gamma=0.025)),
         "test_frontier_heavyball.py::test_mars_matches_heavyball_with_its_coefficient"),
        ("Cautious AdamW (eps ~ 0), deviation", "heavyball.AdamW(caution=True)", lambda: cnn_parity(
            lambda p: optim.CautiousAdamW(p, lr=1e-3, eps=e, weight_decay=0.0),
            lambda p: heavyball.AdamW(p, lr=1e-3, betas=(0.9, 0.999), eps=e, weight_decay=0.0, caution=True)),
         "test_frontier_heavyball.py::test_cautious_adamw_differs_from_heavyball_by_its_mask_scale"),
        ("SOAP (no decay, eps ~ 0), deviation", "heavyball.SOAP", lambda: cnn_parity(
            lambda p: optim.SOAP(p, lr=1e-3, eps=e, weight_decay=0.0),
            lambda p: heavyball.SOAP(p, lr=1e-3, betas=(0.95, 0.95), eps=e, weight_decay=0.0, precondition_frequency=10,
                                     merge_dims=False, use_precond_schedule=False)),
         "none (different algorithm)"),
        ("PSGD Kron, deviation", "heavyball.PSGDKron", lambda: max_relative_difference(
            seeded_run(lambda p: optim.PSGDKron(p, lr=1e-3, seed=None)), seeded_run(lambda p: heavyball.PSGDKron(p, lr=1e-3))),
         "none (different algorithm)"),
    ]


def main() -> None:
    torch.set_num_threads(1)
    print("| method | reference | max relative difference after 50 steps | test |")
    print("|---|---|---|---|")
    for name, reference, measure, test in ROWS + heavyball_rows():
        with contextlib.redirect_stdout(io.StringIO()):
            value = measure()
        where = f"`tests/optim/{test}`" if test.startswith("test_") else test
        print(f"| {name} | {reference} | {value:.1e} | {where} |")


if __name__ == "__main__":
    main()
