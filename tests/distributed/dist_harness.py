"""Run a function on N gloo ranks in child processes, with a hard timeout.

``run_on_ranks(fn, world_size, *args, timeout=...)`` starts ``world_size`` processes, initialises a
gloo process group in each (rank ``r`` calls ``fn(r, world_size, *args)``) and returns the list of
their return values in rank order. It fails (``RankFailure``) as soon as one rank raises, with that
rank's traceback, and (``RankTimeout``) when the ranks have not all finished within ``timeout``
seconds; in both cases every child still running is killed first, so a deadlocked collective can
never hang the test session.

The timeout is a hang guard, not a measurement: a timer thread fires it, and the parent otherwise sleeps
until a rank exits (``multiprocessing.connection.wait`` on the processes' sentinels); nothing here reads
the clock.

Rendezvous is race-free: the parent opens the ``TCPStore`` on port 0 of 127.0.0.1 (the operating
system picks a free port and the store keeps it bound) and the children connect to it as clients.

Children come from a fork server that has already imported torch and gradkit (``dist_preload``),
so a run costs a fork per rank rather than a fresh interpreter; the fork server itself is single-threaded, which
keeps forking safe. ``fn`` must be a module-level function of an importable module (it is pickled
by reference) and its return value must be picklable by ``torch.save``.

``run_once(tmp_path_factory, key, fn, world_size, ...)`` is the same for a module-scoped fixture
whose tests pytest-xdist may spread over several workers: the first worker to get there runs the
ranks and stores the results in the session's shared temporary directory; the others wait for it
(a file lock) and read them, so the ranks run once per session, not once per worker.
"""
from __future__ import annotations

import datetime
import fcntl
import multiprocessing
import os
import tempfile
import threading
import traceback
from multiprocessing.connection import wait

import torch
import torch.distributed as dist

HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 120.0
FAILURE_GRACE = 3.0  # seconds the other ranks get to finish or fail once one rank has failed
_PRELOAD = ["dist_preload"]  # imports and first-use costs, paid once in the fork server


class RankFailure(RuntimeError):
    """A rank raised (its traceback is the message)."""


class RankTimeout(RuntimeError):
    """The ranks did not all finish in time; they were killed."""


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _child(fn, rank: int, world_size: int, port: int, args: tuple, out_dir: str, timeout: float,
           collective_timeout: float) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    result_path = os.path.join(out_dir, f"rank{rank}.pt")
    try:
        store = dist.TCPStore(HOST, port, world_size, False, timeout=datetime.timedelta(seconds=timeout))
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=collective_timeout))
        result = fn(rank, world_size, *args)
    except BaseException:  # report everything, before tearing down the group makes the peers fail too
        torch.save({"ok": False, "error": traceback.format_exc()}, result_path)
        raise SystemExit(1)
    dist.destroy_process_group()
    torch.save({"ok": True, "value": result}, result_path)


def _kill(processes) -> None:
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(5.0)
        if p.is_alive():
            p.kill()
            p.join(5.0)


def run_on_ranks(fn, world_size: int, *args, timeout: float = DEFAULT_TIMEOUT, collective_timeout: float | None = None) -> list:
    """``[fn(rank, world_size, *args) for rank in range(world_size)]``, each in its own gloo rank.

    ``collective_timeout`` (default: ``timeout``) is the process group's own: a collective that
    waits longer raises in its rank, which turns a mismatch between ranks into a ``RankFailure``
    with a traceback instead of a ``RankTimeout``.
    """
    ctx = _context()
    store = dist.TCPStore(HOST, 0, None, True, timeout=datetime.timedelta(seconds=timeout), wait_for_workers=False)
    with tempfile.TemporaryDirectory(prefix="gradkit-dist-") as out_dir:
        processes = [
            ctx.Process(target=_child, args=(fn, rank, world_size, store.port, args, out_dir, timeout,
                                             collective_timeout or timeout), daemon=True)
            for rank in range(world_size)
        ]
        for p in processes:
            p.start()
        expired, fire = ctx.Pipe(duplex=False)
        timer = threading.Timer(timeout, fire.send, args=(True,))
        timer.daemon = True
        timer.start()
        running = {p.sentinel: rank for rank, p in enumerate(processes)}
        exited: list[int] = []  # ranks in the order they were seen to exit
        try:
            while running:
                ready = wait([*running, expired])
                if expired in ready:
                    raise RankTimeout(f"ranks {sorted(running.values())} of {world_size} still running after "
                                      f"{timeout:.0f} s (a hang, e.g. a collective some rank never reached); killed them")
                exited += [running.pop(s) for s in ready]
                if any(processes[r].exitcode != 0 for r in exited):
                    # The others usually fail within moments (their peer is gone); collect them too.
                    while running and (ready := wait(list(running), timeout=FAILURE_GRACE)):
                        exited += [running.pop(s) for s in ready]
                    failed = [r for r in exited if processes[r].exitcode != 0]
                    raise RankFailure(_describe_failure(failed, processes, out_dir))
        finally:
            timer.cancel()
            _kill(processes)
            del store
        results = []
        for rank in range(world_size):
            record = torch.load(os.path.join(out_dir, f"rank{rank}.pt"), weights_only=False)
            results.append(record["value"])
        return results


def _describe_failure(failed, processes, out_dir) -> str:
    """Every failed rank's traceback, in the order they exited: the first to fail first (the others mostly
    lost a peer)."""
    reports = []
    for rank in failed:
        path = os.path.join(out_dir, f"rank{rank}.pt")
        record = torch.load(path, weights_only=False) if os.path.exists(path) else {}
        text = record.get("error") or f"exited with code {processes[rank].exitcode} and left no report\n"
        reports.append(f"rank {rank} raised:\n{text}")
    return "".join(reports)


def run_once(tmp_path_factory, key: str, fn, world_size: int, *args, timeout: float = DEFAULT_TIMEOUT) -> list:
    """``run_on_ranks`` once per test session, shared between pytest-xdist workers (see the module docstring)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return run_on_ranks(fn, world_size, *args, timeout=timeout)
    shared = tmp_path_factory.getbasetemp().parent  # the session's directory, above each worker's own
    stored = shared / f"gradkit-dist-{key}.pt"
    with open(shared / f"gradkit-dist-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if stored.exists():
            return torch.load(stored, weights_only=False)
        results = run_on_ranks(fn, world_size, *args, timeout=timeout)
        torch.save(results, stored)
        return results
