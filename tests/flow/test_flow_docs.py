"""The README's contract: its first two blocks are the set-up/main-job and test commands, CI
runs exactly those, and the command reference covers every ``dynfix`` command."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from dynfix.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
MAIN_JOB = "bash tools/setup.sh && .venv/bin/dynfix flow"
TESTS = ".venv/bin/python -m pytest"


def commands() -> list[str]:
    sub = next(a for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S)
    assert text.startswith("```sh\n")
    assert blocks[0] == ("sh", MAIN_JOB + "\n")
    assert blocks[1] == ("sh", TESTS + "\n")
    # Nothing but blank lines between them.
    assert text.index(f"```sh\n{TESTS}") - text.index("```\n") <= len("```\n\n")


def test_ci_runs_the_readme_commands():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    setup, main_job = MAIN_JOB.split(" && ")
    assert lines[-3:] == [setup, main_job, TESTS]


def test_every_command_is_documented():
    readme = (ROOT / "README.md").read_text()
    cli_md = (ROOT / "docs" / "cli.md").read_text()
    for name in commands():
        assert f"`dynfix {name}" in readme, f"README lacks dynfix {name}"
        assert f"## dynfix {name}\n" in cli_md, f"docs/cli.md lacks dynfix {name}"


def test_readme_points_at_existing_files():
    readme = (ROOT / "README.md").read_text()
    for path in re.findall(r"`((?:docs|tools|tests)/[\w./]+)`", readme):
        assert (ROOT / path).exists(), path
