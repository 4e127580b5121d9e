"""``gradkit list``: everything registered by name (optimizers, transforms, aggregators, attribution
methods, projectors, arena tasks), with its paper."""
from __future__ import annotations

import argparse
import inspect
import textwrap

from gradkit.registry import KINDS, REGISTRIES, list_entries, suggestion

FUSED_MARK = "[fused]"


def has_fused_form(obj) -> bool:
    """An optimizer that takes ``fused=True``, or a transform class with a fused form."""
    from gradkit.core.transform import GradientTransform, fused_kind_of

    if isinstance(obj, type) and issubclass(obj, GradientTransform):
        return fused_kind_of(obj) is not None
    try:
        return "fused" in inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False


def format_entries(kind: str | None = None, references: bool = True) -> str:
    lines = []
    for k in KINDS if kind is None else (kind,):
        entries = list_entries(k)
        if not entries:
            continue
        lines.append(f"{REGISTRIES[k].plural}:")
        width = max(len(e.name) for e in entries)
        for e in entries:
            fused = k in ("optimizer", "transform") and has_fused_form(e.obj)
            lines.append(f"  {e.name:<{width}}  {e.summary}" + (f"  {FUSED_MARK}" if fused else ""))
            if references and e.reference:
                lines.extend(textwrap.wrap(e.reference, 100, initial_indent=" " * (width + 4) + "ref: ", subsequent_indent=" " * (width + 9)))
        lines.append("")
    if kind in (None, "optimizer", "transform"):
        lines.append(f"{FUSED_MARK}: has a fused form (fused=True compiles the whole step into one program)")
    return "\n".join(lines).rstrip() + "\n"


def _kind(text: str) -> str:
    if text not in KINDS:
        raise argparse.ArgumentTypeError(f"unknown kind {text!r}{suggestion(text, KINDS)}; kinds: {', '.join(KINDS)}")
    return text


def _run(args: argparse.Namespace) -> int:
    print(format_entries(args.kind, references=not args.short), end="")
    return 0


def register(sub) -> None:
    p = sub.add_parser("list", help="list what gradkit knows by name (optimizers, transforms, ...) with papers",
                       description="List every registered optimizer, transform, aggregator, attribution method, "
                                   "projector and arena task, with its summary and paper.")
    p.add_argument("kind", nargs="?", type=_kind, metavar="KIND",
                   help=f"only this kind: {', '.join(KINDS)} (default: every kind)")
    p.add_argument("--short", action="store_true", help="one line each, without references")
    p.set_defaults(func=_run)
