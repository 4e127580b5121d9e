"""The ``gradkit`` command: argument parsing only; the work lives in the subpackages.

Each subcommand module exposes ``register(subparsers)``, which adds its parser(s) and sets
``func`` to the function that runs it.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that provide subcommands, in the order ``gradkit --help`` lists them.
COMMAND_MODULES = ("gradkit.bench.cli", "gradkit.listing", "gradkit.explain.cli", "gradkit.inspect.command")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradkit", description="Everything a training loop does with gradients.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, FileNotFoundError) as err:
        # Bad input from the command line: one clear line, no traceback.
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"gradkit {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
