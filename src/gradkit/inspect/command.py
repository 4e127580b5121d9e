"""``gradkit inspect``: plot Inspector logs (JSON lines), one PNG per quantity, runs overlaid."""
from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from gradkit.bench.rundir import check_writable_dir

    from .plots import QUANTITIES, load_log, plot_runs

    labels = args.labels or [Path(p).stem for p in args.logs]
    if len(labels) != len(args.logs):
        raise ValueError(f"--labels must give one label per log ({len(args.logs)}), got {len(labels)}")
    runs = {}
    for label, path in zip(labels, args.logs):
        if not Path(path).is_file():
            raise FileNotFoundError(f"log file not found: {path}")
        runs[label] = load_log(path)
        if not runs[label]:
            raise ValueError(f"{path}: holds no Inspector records")
    quantities = args.quantities or list(QUANTITIES)
    unknown = [q for q in quantities if q not in QUANTITIES]
    if unknown:
        raise ValueError(f"--quantities must be among {sorted(QUANTITIES)}, got {unknown}")
    check_writable_dir(args.out, "--out")
    for quantity in quantities:
        try:
            path = plot_runs(runs, quantity, Path(args.out) / f"{args.prefix}{quantity}.png")
        except (KeyError, TypeError, IndexError, AttributeError) as err:  # records of the wrong shape
            detail = f"missing {err}" if isinstance(err, KeyError) else str(err)
            raise ValueError(f"{', '.join(args.logs)}: the records' {quantity!r} entries are not what an "
                             f"Inspector writes ({detail})") from None
        if path is not None:
            print(path)
    return 0


def register(sub) -> None:
    p = sub.add_parser("inspect", help="plot Inspector logs (sharpness, overlap, effective step size, ...)",
                       description="Plot the JSON-lines logs written by gradkit.inspect.Inspector: one PNG per "
                                   "quantity, with every log overlaid, written as OUT/PREFIX<quantity>.png.")
    p.add_argument("logs", nargs="+", help="JSON-lines files written by gradkit.inspect.Inspector")
    p.add_argument("--labels", nargs="+", help="one legend label per log (default: the file names without extension)")
    p.add_argument("--quantities", nargs="+", metavar="QUANTITY",
                   help="which plots, from: sharpness, overlap, effective_step, weight_norm, update_ratio, grad_norm, "
                        "trace, noise_scale, loss (default: every quantity found in the logs)")
    p.add_argument("--out", default=".", help="output folder for the PNGs, created if missing (default: .)")
    p.add_argument("--prefix", default="inspect_", help="file-name prefix of the PNGs (default: inspect_)")
    p.set_defaults(func=_run)
