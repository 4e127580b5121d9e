"""Time per batch of gradkit.explain against Captum on the same model, in one run.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/explain_speed.py [--repeats 30] [--threads 1]

Prints the median time of each method and the ratio gradkit / Captum (goal: <= 1.0). Calls of the
two libraries are interleaved so that load on the machine hits both alike.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from gradkit.datasets import digits
from gradkit.explain import integrated_gradients, saliency, smoothgrad
from gradkit.models import DigitsCNN, digits_mlp


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(name, ours, theirs, repeats):
    for _ in range(3):  # warm-up: allocator, autograd caches
        ours(), theirs()
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        t_ours.append(_time(ours))
        t_theirs.append(_time(theirs))
    a, b = statistics.median(t_ours), statistics.median(t_theirs)
    print(f"| {name} | {a * 1e3:.2f} | {b * 1e3:.2f} | {a / b:.2f} |", flush=True)
    return a / b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    torch.manual_seed(0)
    data = digits("val", image=True)
    models = {
        "DigitsCNN": (DigitsCNN().eval(), data.inputs[: args.batch]),
        "digits MLP": (digits_mlp(hidden=128).eval(), data.inputs[: args.batch].flatten(1)),
    }
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, median of {args.repeats}")
    print("| method | gradkit (ms) | Captum (ms) | ratio |")
    print("|---|---|---|---|")
    ratios = []
    for model_name, (model, x) in models.items():
        target = data.targets[: args.batch]
        ig, nt = IntegratedGradients(model), NoiseTunnel(Saliency(model))
        for method in ("gausslegendre", "riemann_trapezoid"):
            ratios.append(compare(
                f"IG, 50 steps, {method}, {model_name}",
                lambda: integrated_gradients(model, x, target, steps=50, method=method),
                lambda: ig.attribute(x, target=target, n_steps=50, method=method),
                args.repeats,
            ))
        ratios.append(compare(
            f"SmoothGrad (saliency), 25 samples, {model_name}",
            lambda: smoothgrad(model, x, target, method=saliency, samples=25, stdev=0.1),
            lambda: nt.attribute(x, nt_type="smoothgrad", nt_samples=25, stdevs=0.1, target=target),
            args.repeats,
        ))
    print(f"worst ratio {max(ratios):.2f}, geometric mean {statistics.geometric_mean(ratios):.2f}")


if __name__ == "__main__":
    main()
