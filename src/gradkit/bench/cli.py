"""``gradkit bench`` and ``gradkit report``: argument parsing only; the work is in the runner and report."""
from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
from pathlib import Path

from .defaults import DEFAULT_OPTIMIZERS, DEFAULT_SEEDS, DEFAULT_TASKS

__all__ = ["register"]

_EPILOG = """\
specs: NAME[:key=value,...]; values are int, float, true/false, none, tuples with '/'
(betas=0.9/0.999) or words. Optimizers from other libraries by prefix: torch:AdamW,
pytorch_optimizer:Adan, torchao:AdamW8bit, bitsandbytes:AdamW8bit, adamp:AdamP. Example:
  gradkit bench --task digits-cnn --opt adamw:weight_decay=0.1 --opt torch:SGD:momentum=0.9 \\
      --sweep lr=3e-4,1e-3,3e-3 --seeds 3 --name cnn
"""


def _command(args: argparse.Namespace) -> str:
    """The canonical command line that reproduces this run (``--name`` only when it was given)."""
    parts = ["gradkit", "bench"]
    for t in args.tasks:
        parts += ["--task", t]
    for o in args.opts:
        parts += ["--opt", o]
    for a in args.aggregators or []:
        parts += ["--aggregator", a]
    for s in args.sweep or []:
        parts += ["--sweep", s]
    parts += ["--seeds", str(args.seeds)]
    for flag in ("steps", "eval_every", "batch_size"):
        if getattr(args, flag) is not None:
            parts += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if args.device != "cpu":
        parts += ["--device", args.device]
    if args.threads != 1:
        parts += ["--threads", str(args.threads)]
    if args.name is not None:
        parts += ["--name", args.name]
    if args.out_dir != "runs":
        parts += ["--out-dir", args.out_dir]
    return shlex.join(parts)


def _bench(args: argparse.Namespace) -> int:
    try:
        return _run_bench(args)
    except TypeError as err:  # a wrongly typed option from the command line: one clear line, like ValueError
        raise ValueError(str(err)) from None


def _default_run_name(tasks: list[str]) -> str:
    return "default" if tasks == list(DEFAULT_TASKS) else "-".join(t.split(":")[0] for t in tasks)


def _task_defaults(tasks: list[str]) -> tuple[list[str] | None, int | None]:
    """The optimizers and seed count a task declares for a run with none named (``default_optimizers``,
    ``default_seeds``: tasks that train several models per run), when every task given declares them."""
    from gradkit.spec import parse_spec

    from .tasks import get_task

    classes = [get_task(parse_spec(t).name) for t in tasks]
    optimizers = [getattr(c, "default_optimizers", None) for c in classes]
    seeds = [getattr(c, "default_seeds", None) for c in classes]
    chosen = list(dict.fromkeys(o for group in optimizers for o in group)) if all(optimizers) else None
    return chosen, (max(seeds) if all(seeds) else None)


def _run_bench(args: argparse.Namespace) -> int:
    from .rundir import check_writable_dir, claim_run_dir, refuse_existing_run, valid_run_name

    if args.list_tasks:
        from .tasks import list_tasks

        for task in list_tasks():
            print(f"{task.name:<18} {task.summary}")
            print(f"{'':<18} options: " + ", ".join(f"{k}={v}" for k, v in task.defaults.items()))
        return 0
    # Everything that can be checked is checked before the first step of training.
    args.tasks = args.tasks or list(DEFAULT_TASKS)
    task_optimizers, task_seeds = _task_defaults(args.tasks)
    args.opts = args.opts or task_optimizers or list(DEFAULT_OPTIMIZERS)
    if args.seeds is None:
        args.seeds = task_seeds or DEFAULT_SEEDS
    if args.name is not None:
        valid_run_name(args.name)
    elif args.overwrite:
        raise ValueError("--overwrite replaces the run named by --name; give --name NAME (without --name every "
                         "run gets a fresh directory, so nothing is overwritten)")
    out_dir = check_writable_dir(args.out_dir)
    if args.name is not None and not args.overwrite:
        refuse_existing_run(out_dir / args.name, args.name)  # early; checked again under the lock
    from .runner import BenchConfig, plan_bench
    from .spec import parse_sweep

    config = BenchConfig(tasks=args.tasks, optimizers=args.opts, aggregators=args.aggregators or [],
                         sweep=parse_sweep(args.sweep or []), seeds=args.seeds, steps=args.steps,
                         eval_every=args.eval_every, batch_size=args.batch_size, device=args.device,
                         divergence_factor=args.divergence_factor)
    import torch

    torch.set_num_threads(args.threads)
    plan = plan_bench(config)  # builds every optimizer once: a bad spec or sweep value fails here
    run_dir, lock = claim_run_dir(out_dir, args.name, _default_run_name(args.tasks), args.overwrite)
    try:
        with _signals_interrupt():
            return _train_and_report(args, config, plan, run_dir)
    finally:
        lock.release()


def _train_and_report(args, config, plan, run_dir: Path) -> int:
    from .report import render_report, terminal_summary
    from .runner import run_bench

    if args.overwrite:
        _remove_previous_outputs(run_dir)
    results_path = run_dir / "results.json"
    progress = not args.no_progress and sys.stderr.isatty()
    results = run_bench(config, name=run_dir.name, command=_command(args), progress=progress, plan=plan,
                        on_run=lambda res, _run: res.save(results_path))
    with _signals_blocked():  # the final status is written whole, even if Ctrl-C comes again now
        results.save(results_path)
    files = render_report(results, run_dir, plots=not args.no_plots)
    print(terminal_summary(results))
    print(f"\nresults: {results_path}\nreport:  {files[0]}" + (f" (+{len(files) - 1} figures)" if len(files) > 1 else ""))
    if results.status == "interrupted":
        print("interrupted: the report holds the runs that finished", file=sys.stderr)
        return 130
    return 1 if any(r.status == "error" for r in results.runs) else 0


def _remove_previous_outputs(run_dir: Path) -> None:
    """What an earlier bench wrote into ``run_dir`` (results, report, figures); nothing else."""
    from .rundir import safe_filename

    old = run_dir / "results.json"
    figures = []
    if old.is_file():
        try:
            from .results import load_results

            figures = [p for task in load_results(old).tasks for p in run_dir.glob(f"{safe_filename(task)}_*.png")]
        except ValueError:
            figures = []
    for path in (old, run_dir / "report.md", *figures):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _signals_interrupt():
    """SIGTERM and SIGHUP stop the bench as Ctrl-C does: the finished runs are kept, marked interrupted."""
    def interrupt(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            try:
                previous[sig] = signal.signal(sig, interrupt)
            except ValueError:  # not the main thread: leave signals alone
                pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _signals_blocked():
    signals = {signal.SIGINT, signal.SIGTERM} | ({signal.SIGHUP} if hasattr(signal, "SIGHUP") else set())
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _report(args: argparse.Namespace) -> int:
    from .report import render_report, terminal_summary
    from .results import load_results
    from .rundir import LOCK_NAME, RunLock

    results = load_results(args.run_dir)
    out_dir = Path(args.run_dir) if Path(args.run_dir).is_dir() else Path(args.run_dir).parent
    # Not while a bench is still writing this directory. Every bench creates the lock file first, so
    # a directory without one (a copied or committed run) has no writer and gets no lock file.
    with RunLock(out_dir) if (out_dir / LOCK_NAME).exists() else contextlib.nullcontext():
        files = render_report(results, out_dir, plots=not args.no_plots)
    print(terminal_summary(results))
    print(f"\nreport: {files[0]}" + (f" (+{len(files) - 1} figures)" if len(files) > 1 else ""))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def register(sub) -> None:
    p = sub.add_parser("bench", help="compare optimizers on tasks; writes OUT_DIR/NAME/{results.json,report.md,*.png}",
                       description="Train every optimizer on every task the same way and report the comparison. "
                                   "Every run gets a fresh directory OUT_DIR/NAME; an existing run is never "
                                   "overwritten unless --overwrite is given.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", dest="tasks", action="append", metavar="SPEC",
                   help=f"task (repeatable; default: {', '.join(DEFAULT_TASKS)}); see --list-tasks")
    p.add_argument("--opt", dest="opts", action="append", metavar="SPEC",
                   help=f"optimizer (repeatable; 'all' = every gradkit optimizer; default: {' '.join(DEFAULT_OPTIMIZERS)}, "
                        "or the task's own list, e.g. adamw for arrow-pointing)")
    p.add_argument("--aggregator", dest="aggregators", action="append", metavar="SPEC",
                   help="gradient aggregator for multi-task tasks (repeatable; default: the task's list)")
    p.add_argument("--sweep", action="append", metavar="KEY=V1,V2,...",
                   help="hyperparameter grid; each optimizer's best point is chosen on validation "
                        "(repeatable; default: no sweep)")
    p.add_argument("--seeds", type=_positive_int, default=None,
                   help=f"seeds per optimizer (default: {DEFAULT_SEEDS}, or the task's own, e.g. 1 for arrow-pointing)")
    p.add_argument("--steps", type=_positive_int, help="override every task's number of steps (default: each task's own)")
    p.add_argument("--eval-every", type=_positive_int, help="override every task's evaluation interval (default: each task's own)")
    p.add_argument("--batch-size", type=_positive_int, help="override every task's batch size (default: each task's own)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu; cuda where a GPU exists)")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="torch CPU threads (default: 1; the models are small, and one thread keeps step times "
                        "steady on a shared machine)")
    p.add_argument("--divergence-factor", type=float, default=1e3,
                   help="a loss above this multiple of its first value counts as diverged (default: 1000)")
    p.add_argument("--name", help="run name: output goes to OUT_DIR/NAME, which must not hold a run yet unless "
                                  "--overwrite is given (default: a fresh directory named after the tasks, "
                                  "'default' for the default run, with -2, -3, ... appended when taken)")
    p.add_argument("--overwrite", action="store_true",
                   help="with --name: replace the run already in OUT_DIR/NAME (default: refuse)")
    p.add_argument("--out-dir", default="runs", help="parent directory of the run, created if missing (default: runs)")
    p.add_argument("--no-plots", action="store_true", help="write report.md without figures (default: with figures)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (default: progress bars when stderr is a terminal, none otherwise)")
    p.add_argument("--list-tasks", action="store_true", help="list the tasks and their options, then exit")
    p.set_defaults(func=_bench)

    r = sub.add_parser("report", help="re-render report.md and figures from a run's results.json",
                       description="Re-render report.md and the figures of a finished (or interrupted) bench from its "
                                   "results.json alone; everything is written inside the run directory.")
    r.add_argument("run_dir", help="run directory (OUT_DIR/NAME) or its results.json")
    r.add_argument("--no-plots", action="store_true", help="write report.md without figures (default: with figures)")
    r.set_defaults(func=_report)
