"""Stopping a command from outside: SIGTERM (a scheduler, ``timeout``, a CI limit) unwinds it
like Ctrl-C: exit status 143, one line on stderr, no output folder, no temporary folders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim_helpers import require_simulator


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    tmp = cwd / "tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp))
    return subprocess.Popen([sys.executable, "-m", "dynfix.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(p: subprocess.Popen, marker: str, timeout: float = 240) -> list[str]:
    """stderr lines up to and including the first that contains ``marker``."""
    lines, t0 = [], time.monotonic()
    for line in p.stderr:
        lines.append(line)
        if marker in line:
            return lines
        if time.monotonic() - t0 > timeout:
            break
    p.kill()
    pytest.fail(f"{marker!r} never appeared: {''.join(lines)[-500:]}")


def terminate(p: subprocess.Popen, delay: float) -> str:
    time.sleep(delay)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    return err


def test_sigterm_during_flow_simulation_leaves_nothing(tmp_path):
    require_simulator("icarus")
    p = start(["flow", "--images", "20", "--output", "out/digits"], tmp_path)
    wait_for(p, "simulate:")
    err = terminate(p, 3.0)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "dynfix: terminated"
    assert "Traceback" not in err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["tmp"]    # out/ was removed too
    assert list((tmp_path / "tmp").iterdir()) == []                # no dynfix-sim-* left


def test_sigterm_during_simulate_keeps_the_design(tmp_path):
    """dynfix simulate DIR stopped mid-run: DIR keeps what generate wrote, no
    simulation.json appears, nothing is left in the temporary folder."""
    require_simulator("icarus")
    from dynfix.cli import main
    q, gen = tmp_path / "q.yaml", tmp_path / "gen"
    assert main(["quantize", "digits", "--calib", "digits", "-o", str(q)]) == 0
    assert main(["generate", "digits", "--quant", str(q), "--board", "icebreaker",
                 "-o", str(gen)]) == 0
    before = sorted(x.name for x in gen.iterdir())
    p = start(["simulate", str(gen), "--images", "200", "--build-dir", "sb"], tmp_path)
    err = terminate(p, 8.0)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "dynfix: terminated"
    assert sorted(x.name for x in gen.iterdir()) == before
    assert list((tmp_path / "tmp").iterdir()) == []
