"""The ``gradkit`` command: argument parsing only; the work lives in the subpackages.

Each subcommand module exposes ``register(subparsers)``, which adds its parser(s) and sets
``func`` to the function that runs it. Subcommand modules import their engines (and torch) only when
the command runs, so ``gradkit --help`` builds the parsers alone.

A user's mistake (a bad spec, a path that cannot be written, a file that is not what it should be)
ends in one line, ``gradkit COMMAND: error: ...``, and exit code 2; never in a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that provide subcommands, in the order ``gradkit --help`` lists them.
COMMAND_MODULES = ("gradkit.bench.cli", "gradkit.listing", "gradkit.explain.cli", "gradkit.inspect.command")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradkit", description="Everything a training loop does with gradients.",
        epilog="Run 'gradkit COMMAND --help' for a command's options. Errors in the input end with one line "
               "and exit code 2.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    summaries = {action.dest: action.help for action in sub._choices_actions}
    for name, command in sub.choices.items():  # `gradkit COMMAND --help` starts with what the command does
        if command.description is None and summaries.get(name):
            command.description = summaries[name][0].upper() + summaries[name][1:] + "."
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
