"""``gradkit bench`` and ``gradkit report``: argument parsing only; the work is in the runner and report."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .defaults import DEFAULT_OPTIMIZERS, DEFAULT_SEEDS, DEFAULT_TASKS

__all__ = ["register"]

_EPILOG = """\
specs: NAME[:key=value,...]; values are int, float, true/false, none, tuples with '/'
(betas=0.9/0.999) or words. Optimizers from other libraries by prefix: torch:AdamW,
pytorch_optimizer:Adan, adamp:AdamP. Example:
  gradkit bench --task digits-cnn --opt adamw:weight_decay=0.1 --opt torch:SGD:momentum=0.9 \\
      --sweep lr=3e-4,1e-3,3e-3 --seeds 3 --name cnn
"""


def _command(args: argparse.Namespace) -> str:
    """The canonical command line that reproduces this run."""
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
    parts += ["--name", args.name]
    if args.out_dir != "runs":
        parts += ["--out-dir", args.out_dir]
    return shlex.join(parts)


def _bench(args: argparse.Namespace) -> int:
    try:
        return _run_bench(args)
    except TypeError as err:  # a wrongly typed option from the command line: one clear line, like ValueError
        raise ValueError(str(err)) from None


def _run_bench(args: argparse.Namespace) -> int:
    from .report import render_report, terminal_summary
    from .runner import BenchConfig, run_bench
    from .spec import parse_sweep
    from .tasks import list_tasks

    if args.list_tasks:
        for task in list_tasks():
            print(f"{task.name:<18} {task.summary}")
            print(f"{'':<18} options: " + ", ".join(f"{k}={v}" for k, v in task.defaults.items()))
        return 0
    args.tasks = args.tasks or list(DEFAULT_TASKS)
    args.opts = args.opts or list(DEFAULT_OPTIMIZERS)
    args.name = args.name or ("default" if args.tasks == list(DEFAULT_TASKS) else "-".join(t.split(":")[0] for t in args.tasks))
    if "/" in args.name or args.name in ("", ".", ".."):
        raise ValueError(f"--name must be a plain directory name, got {args.name!r}")
    config = BenchConfig(tasks=args.tasks, optimizers=args.opts, aggregators=args.aggregators or [],
                         sweep=parse_sweep(args.sweep or []), seeds=args.seeds, steps=args.steps,
                         eval_every=args.eval_every, batch_size=args.batch_size, device=args.device,
                         divergence_factor=args.divergence_factor)
    import torch

    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir) / args.name
    results_path = out_dir / "results.json"
    results = run_bench(config, name=args.name, command=_command(args), progress=not args.no_progress,
                        on_run=lambda res, _run: res.save(results_path))
    results.save(results_path)
    files = render_report(results, out_dir, plots=not args.no_plots)
    print(terminal_summary(results))
    print(f"\nresults: {results_path}\nreport:  {files[0]}" + (f" (+{len(files) - 1} figures)" if len(files) > 1 else ""))
    if results.status == "interrupted":
        print("interrupted: the report holds the runs that finished", file=sys.stderr)
        return 130
    return 1 if any(r.status == "error" for r in results.runs) else 0


def _report(args: argparse.Namespace) -> int:
    from .report import render_report, terminal_summary
    from .results import load_results

    results = load_results(args.run_dir)
    out_dir = Path(args.run_dir) if Path(args.run_dir).is_dir() else Path(args.run_dir).parent
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
    p = sub.add_parser("bench", help="compare optimizers on tasks; writes runs/NAME/{results.json,report.md,*.png}",
                       description="Train every optimizer on every task the same way and report the comparison.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", dest="tasks", action="append", metavar="SPEC",
                   help=f"task (repeatable; default: {', '.join(DEFAULT_TASKS)}); see --list-tasks")
    p.add_argument("--opt", dest="opts", action="append", metavar="SPEC",
                   help=f"optimizer (repeatable; 'all' = every gradkit optimizer; default: {' '.join(DEFAULT_OPTIMIZERS)})")
    p.add_argument("--aggregator", dest="aggregators", action="append", metavar="SPEC",
                   help="gradient aggregator for multi-task tasks (repeatable; default: the task's list)")
    p.add_argument("--sweep", action="append", metavar="KEY=V1,V2,...",
                   help="hyperparameter grid; each optimizer's best point is chosen on validation (repeatable)")
    p.add_argument("--seeds", type=_positive_int, default=DEFAULT_SEEDS, help=f"seeds per optimizer (default {DEFAULT_SEEDS})")
    p.add_argument("--steps", type=_positive_int, help="override every task's number of steps")
    p.add_argument("--eval-every", type=_positive_int, help="override every task's evaluation interval")
    p.add_argument("--batch-size", type=_positive_int, help="override every task's batch size")
    p.add_argument("--device", default="cpu", help="torch device (default cpu; cuda where a GPU exists)")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="torch CPU threads (default 1: the models are small, and one thread keeps step times "
                        "steady on a shared machine)")
    p.add_argument("--divergence-factor", type=float, default=1e3,
                   help="a loss above this multiple of its first value counts as diverged (default 1000)")
    p.add_argument("--name", help="run name: output goes to OUT_DIR/NAME (default: derived from the tasks)")
    p.add_argument("--out-dir", default="runs", help="parent directory of the run (default runs)")
    p.add_argument("--no-plots", action="store_true", help="write report.md without figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--list-tasks", action="store_true", help="list the tasks and their options, then exit")
    p.set_defaults(func=_bench)

    r = sub.add_parser("report", help="re-render report.md and figures from a run's results.json")
    r.add_argument("run_dir", help="run directory (runs/NAME) or its results.json")
    r.add_argument("--no-plots", action="store_true", help="write report.md without figures")
    r.set_defaults(func=_report)
