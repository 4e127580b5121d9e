"""FSDP2: a non-finite gradient on one rank's shard is seen by every rank (two gloo processes on CPU).

Each rank holds a shard of every gradient (a DTensor); only rank 0's shard is poisoned. With
``nonfinite="raise"`` both ranks must raise, with ``"skip"`` both must skip, and a clean step afterwards
must run on both (no rank left waiting in a collective). The processes have a hard timeout, so a hang
fails the test instead of stalling the suite.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")

WORKER = textwrap.dedent('''
    import json, os, sys
    import torch
    import torch.distributed as dist
    from torch import nn
    import gradkit

    def run(rank, store, out):
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (2,))
        results = {}
        for policy in ("raise", "skip"):
            results[policy] = check(rank, mesh, fully_shard, policy)
        dist.barrier()
        with open(f"{out}.{rank}", "w") as f:
            json.dump(results, f)
        dist.destroy_process_group()

    def check(rank, mesh, fully_shard, policy):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
        fully_shard(model[0], mesh=mesh)
        fully_shard(model[2], mesh=mesh)
        fully_shard(model, mesh=mesh)
        opt = gradkit.optim.AdamW(model.parameters(), lr=1e-2, nonfinite=policy)
        x = torch.randn(4, 8)
        result = {}

        def backward():
            opt.zero_grad()
            model(x).square().mean().backward()

        backward()
        if rank == 0:
            local = model[0].weight.grad.to_local()
            local.view(-1)[0] = float("nan")
        try:
            opt.step()
            result["first"] = "stepped"
        except FloatingPointError:
            result["first"] = "raised"
        result["skipped"] = opt.skipped_steps
        before = [p.detach().to_local().clone() for p in model.parameters()]
        backward()
        opt.step()
        result["clean_moved"] = any(not torch.equal(b, p.detach().to_local()) for b, p in zip(before, model.parameters()))
        return result

    if __name__ == "__main__":
        store, out = sys.argv[1], sys.argv[2]
        torch.multiprocessing.spawn(run, args=(store, out), nprocs=2)
''')


def test_every_rank_reaches_the_same_nonfinite_verdict(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "result"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "store"), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
        proc.communicate()
        pytest.fail("the ranks did not finish within 120 s: one waits in a collective the other never joins")
    assert proc.returncode == 0, stderr[-3000:]
    results = [json.loads((tmp_path / f"result.{rank}").read_text()) for rank in range(2)]
    for policy, first, skipped in [("raise", "raised", 0), ("skip", "stepped", 1)]:
        assert [r[policy]["first"] for r in results] == [first, first], policy
        assert [r[policy]["skipped"] for r in results] == [skipped, skipped], policy
        assert all(r[policy]["clean_moved"] for r in results), policy
