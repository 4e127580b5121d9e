"""What the frontier parity table (benchmarks/frontier_parity.py) and the frontier parity tests (tests/optim)
share: the smooth CNN, its 50-step parity run, and the reference updates written out from the official
code or a paper's algorithm box where no package ships them (MARS, LaProp, Cautious AdamW).

The model is conv -> tanh -> strided conv -> tanh -> linear on 8x8 digit images. Without ReLU or max-pool
a last-bit difference between two implementations of one algorithm cannot flip a branch, so the parameter
gap after 50 steps measures the algorithms, not the chaos of the training. The data are the first 512
digits training images in mini-batches of 64, in order, cycled.

Importable as ``frontier_references`` once benchmarks/ is on ``sys.path`` (``python benchmarks/NAME.py``
puts it there; tests/optim/_frontier_support.py adds it).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import io

import torch
import torch.nn.functional as F

from gradkit import datasets

EXAMPLES, BATCH = 512, 64


def smooth_cnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.Tanh(),
        torch.nn.Conv2d(6, 8, 3, stride=2, padding=1), torch.nn.Tanh(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10),
    )


@functools.lru_cache(maxsize=None)
def digits_images(n: int = EXAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    split = datasets.digits("train", image=True)
    return split.inputs[:n], split.targets[:n]


def train(model: torch.nn.Module, opt, steps: int, batch: int | None = BATCH) -> None:
    """``steps`` steps of cross-entropy on the digits images: mini-batches of ``batch`` in order (None: all)."""
    x, y = digits_images()
    for t in range(steps):
        start = (t * batch) % x.shape[0] if batch else 0
        xb, yb = (x[start:start + batch], y[start:start + batch]) if batch else (x, y)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()


def max_relative_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """max over tensors of max|a - b| / max|b| (b is the reference)."""
    worst = 0.0
    for pa, pb in zip(a.parameters(), b.parameters()):
        worst = max(worst, ((pa - pb).abs().max() / pb.abs().max().clamp_min(1e-30)).item())
    return worst


def cnn_parity(make_ours, make_reference, steps: int = 50) -> float:
    """Largest relative parameter difference after ``steps`` steps of the smooth CNN on digits."""
    ours = smooth_cnn()
    reference = copy.deepcopy(ours)
    train(ours, make_ours(ours.parameters()), steps)
    train(reference, make_reference(reference.parameters()), steps)
    return max_relative_difference(ours, reference)


def seeded_run(make, steps: int = 50, seed: int = 123) -> torch.nn.Module:
    """The smooth CNN after ``steps`` full-batch steps, the global generator seeded after the model is built
    (PSGD's probe vectors come from it), torch.compile disabled so that compiled reference helpers draw as
    eager torch does; the reference's prints are swallowed."""
    model = smooth_cnn()
    torch.manual_seed(seed)
    opt = make(model.parameters())
    with torch._dynamo.config.patch(disable=True), contextlib.redirect_stdout(io.StringIO()):
        train(model, opt, steps, batch=None)
    return model


class PaperCautiousAdamW(torch.optim.Optimizer):
    """Algorithm 2 of arXiv:2411.16085 as the official C-AdamW writes it (eps outside the bias corrections,
    decay after the step)."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            (b1, b2), lr = group["betas"], group["lr"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                t, m, v, g = state["t"], state["m"], state["v"], p.grad
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                step_size = lr * (1 - b2**t) ** 0.5 / (1 - b1**t)
                mask = (m * g > 0).to(g.dtype)
                mask = mask * (mask.numel() / (mask.sum() + 1))
                p.add_((m * mask) / (v.sqrt() + group["eps"]), alpha=-step_size)
                p.add_(p, alpha=-lr * group["weight_decay"])


class OfficialLaProp(torch.optim.Optimizer):
    """The official LaProp update (lr inside the momentum, bias-corrected by the lr-weighted sum)."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-15):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            (b1, b2), lr = group["betas"], group["lr"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(m=torch.zeros_like(p), v=torch.zeros_like(p), lr1=0.0, w2=0.0)
                g = p.grad
                state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                state["lr1"] = state["lr1"] * b1 + (1 - b1) * lr
                state["w2"] = state["w2"] * b2 + (1 - b2)
                denom = state["v"].div(state["w2"]).sqrt_().add_(group["eps"])
                state["m"].mul_(b1).add_(g / denom, alpha=(1 - b1) * lr)
                p.add_(state["m"], alpha=-1 / (state["lr1"] / lr))


class OfficialMARS(torch.optim.Optimizer):
    """The official MARS-AdamW update (approximate form, ``optimize_1d=True``), written out per tensor."""

    def __init__(self, params, lr, betas=(0.95, 0.99), eps=1e-8, weight_decay=0.0, gamma=0.025):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, gamma=gamma))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            (b1, b2), lr = group["betas"], group["lr"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p), last=torch.zeros_like(p))
                state["t"] += 1
                t, g = state["t"], p.grad
                c = (g - state["last"]).mul(group["gamma"] * (b1 / (1.0 - b1))).add(g)
                norm = torch.norm(c)
                if norm > 1.0:
                    c = c / norm
                state["m"].mul_(b1).add_(c, alpha=1.0 - b1)
                state["v"].mul_(b2).addcmul_(c, c, value=1.0 - b2)
                denom = state["v"].sqrt().mul(1 / (1.0 - b2**t) ** 0.5).add(group["eps"]).mul(1.0 - b1**t)
                p.add_(-lr * (p * group["weight_decay"]).add(state["m"].div(denom)))
                state["last"].copy_(g)
