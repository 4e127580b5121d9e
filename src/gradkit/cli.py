"""The ``gradkit`` command: argument parsing only; the work lives in the subpackages.

Each subcommand module exposes ``register(subparsers)``, which adds its parser(s) and sets
``func`` to the function that runs it. Only the module of the command being run is imported, and it
imports its engine (and torch) only when the command runs.

A user's mistake (a bad spec, a path that cannot be written, a file that is not what it should be)
ends in one line, ``gradkit COMMAND: error: ...``, and exit code 2; never in a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Every command, in the order ``gradkit --help`` lists them: the module whose ``register`` adds its parser,
# and its one-line summary. Only the module of the command being run is imported, so ``gradkit --help``
# imports none of them (tests/core/test_cli.py checks the summaries against the modules' own).
COMMANDS = {
    "bench": ("gradkit.bench.cli", "compare optimizers on tasks; writes OUT_DIR/NAME/{results.json,report.md,*.png}"),
    "report": ("gradkit.bench.cli", "re-render report.md and figures from a run's results.json"),
    "list": ("gradkit.listing", "list what gradkit knows by name (optimizers, transforms, ...) with papers"),
    "explain": ("gradkit.explain.cli", "explain a model's prediction with attribution methods; write a picture and AUC table"),
    "inspect": ("gradkit.inspect.command", "plot Inspector logs (sharpness, overlap, effective step size, ...)"),
}
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command's options (``command=None``), or with only ``command``'s options
    and a one-line entry for each of the others (what ``main`` uses; ``""``: one-line entries only)."""
    parser = argparse.ArgumentParser(
        prog="gradkit", description="Everything a training loop does with gradients.",
        epilog="Run 'gradkit COMMAND --help' for a command's options. Errors in the input end with one line "
               "and exit code 2.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    modules = COMMAND_MODULES if command is None else [COMMANDS[command][0]] if command in COMMANDS else []
    for module in modules:
        importlib.import_module(module).register(sub)
    for name, (_, summary) in COMMANDS.items():  # the rest: listed, not loaded
        if name not in sub.choices:
            sub.add_parser(name, help=summary)
    sub._choices_actions.sort(key=lambda action: list(COMMANDS).index(action.dest) if action.dest in COMMANDS else 99)
    summaries = {action.dest: action.help for action in sub._choices_actions}
    for name, parsed in sub.choices.items():  # `gradkit COMMAND --help` starts with what the command does
        if parsed.description is None and summaries.get(name):
            parsed.description = summaries[name][0].upper() + summaries[name][1:] + "."
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The command word of ``argv`` (the first argument that is not an option), if any."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(argv) or "")  # no command word (gradkit --help): load no command
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError) as err:
        # Bad input from the command line, or a path that cannot be used: one clear line, no traceback.
        print(f"gradkit {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    return int(result or 0)


def _one_line(err: BaseException) -> str:
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
