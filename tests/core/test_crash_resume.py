"""A training process killed with SIGKILL at random points resumes bit-identically from its last checkpoint.

The child trains a tiny MLP with a few optimizers in turn, writing a checkpoint (model, optimizer) every
few steps atomically (a temporary file, then ``os.replace``). The parent kills it at random moments,
restarts it (it resumes from the checkpoint), and finally compares the params with one uninterrupted run.
"""
from __future__ import annotations

import contextlib
import io
import os
import random
import runpy
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

CHILD = textwrap.dedent('''
    import os, sys
    import torch
    from torch import nn
    import gradkit

    torch.set_num_threads(1)
    name, steps, every, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    kwargs = {"rank": 2} if name == "galore" else {}
    opt = gradkit.registry.get_optimizer(name)(model.named_parameters(), **kwargs)
    done = 0
    if os.path.exists(path):
        ckpt = torch.load(path, weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        done = ckpt["step"]
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    for step in range(done, steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x + 0.01 * step), y).backward()
        opt.step()
        if (step + 1) % every == 0:
            tmp = f"{path}.{os.getpid()}.tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1}, tmp)
            os.replace(tmp, path)
            print(step + 1, flush=True)
    torch.save({k: v for k, v in model.state_dict().items()}, path + ".final")
    print("done", flush=True)
''')

STEPS, EVERY = 60, 5


def _run_to_end(script, name, ckpt, kill_after):
    """Start the child; if ``kill_after`` is set, SIGKILL it once it has written that many checkpoints."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), name, str(STEPS), str(EVERY), str(ckpt)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = 0
        for line in proc.stdout:
            seen += 1
            if kill_after is not None and seen >= kill_after:
                time.sleep(random.random() * 0.05)  # land anywhere in the following steps or saves
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


def _check_resume(name, tmp_path, kills_wanted):
    script = tmp_path / "train.py"
    script.write_text(CHILD)
    reference = tmp_path / "reference.pt"
    _run_in_process(script, name, reference)
    rng = random.Random(sum(map(ord, name)))
    interrupted = tmp_path / "interrupted.pt"
    kills = 0
    for _ in range(kills_wanted):  # kill it at random points, then let it finish
        code = _run_to_end(script, name, interrupted, rng.randint(1, STEPS // EVERY - 2))
        kills += code == -signal.SIGKILL
    assert _run_to_end(script, name, interrupted, None) == 0
    assert kills >= 1, "the child finished before any kill landed"
    want = torch.load(str(reference) + ".final", weights_only=True)
    got = torch.load(str(interrupted) + ".final", weights_only=True)
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)


def _run_in_process(script, name, ckpt):
    """The uninterrupted reference, run here (same threads as the child: one)."""
    argv, threads = sys.argv, torch.get_num_threads()
    sys.argv = [str(script), name, str(STEPS), str(EVERY), str(ckpt)]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)


def test_sigkilled_training_resumes_bit_identically(tmp_path):
    # GaLore: moments, projections, per-parameter seeds and counters all have to survive
    _check_resume("galore", tmp_path, kills_wanted=2)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adamw", "frugal", "muon", "sgdsai"])
def test_sigkilled_training_resumes_bit_identically_for_more_optimizers(name, tmp_path):
    _check_resume(name, tmp_path, kills_wanted=4)
