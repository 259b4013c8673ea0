"""Running the ``dynfix`` command line in-process, its output captured."""

from __future__ import annotations

import contextlib
import io

from dynfix.cli import main


def run_cli(args: list[str]) -> tuple[int, str, list[str]]:
    """``dynfix ARGS`` in this process: the exit code, stdout, and stderr's lines."""
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(std), contextlib.redirect_stderr(err):
        code = main(args)
    return code, std.getvalue(), err.getvalue().splitlines()
