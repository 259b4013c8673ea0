"""The ``dynfix`` command line.

Each subcommand lives in its own module under :mod:`dynfix.commands` and exposes
``register(subparsers)``; the parser it adds sets ``func(args) -> int``. User errors
(:class:`~dynfix.errors.DynfixError`) print one line and exit 1; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from dynfix.errors import DynfixError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynfix",
        description="Dynamic fixed-point CNN accelerator generator for FPGAs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import dynfix.commands as commands
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"dynfix.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DynfixError as e:
        print(f"dynfix: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dynfix: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
