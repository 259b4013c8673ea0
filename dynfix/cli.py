"""The ``dynfix`` command line.

Each subcommand lives in its own module under :mod:`dynfix.commands` and exposes
``register(subparsers)``; the parser it adds sets ``func(args) -> int``. User errors
(:class:`~dynfix.errors.DynfixError`) print one line and exit 1; a reader of the output that
goes away (``dynfix info MODEL | head``) ends the command quietly with 141 (128 + SIGPIPE),
as Unix tools do; nothing else is caught.

Stopping: Ctrl-C (SIGINT) and SIGTERM (a scheduler, ``timeout``, a CI limit) both unwind the
running command like an exception, so every output written through
:mod:`dynfix.fileio` and every temporary build folder is removed on the way out and child
processes (simulators) are killed; the exit status is 130 and 143 (128 + the signal).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import signal
import sys
import threading

from dynfix import commands
from dynfix.errors import DynfixError, flag


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C."""


def _terminate(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)      # one unwinding is enough
    raise Terminated()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynfix",
        description="Dynamic fixed-point CNN accelerator generator for FPGAs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"dynfix.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return int(args.func(args) or 0)
    except DynfixError as e:
        print(f"dynfix: error: {e.render(flag)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # stdout's reader is gone: point stdout at the null device so that the flush at
        # exit cannot fail again, and stop as a tool killed by SIGPIPE would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE
    except Terminated:
        print("dynfix: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("dynfix: interrupted", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
