"""Shared helpers of the bench scripts: the results folder, Markdown tables, plots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

OUT = Path(__file__).resolve().parent / "results"
#: How far under a previous build's Fmax a rebuild's PLL runs, placed for that Fmax.
REBUILD_HEADROOM = 0.05


def rebuild_closure(fmax: float, builds: int = 1):
    """The timing closure of a rebuild after a build that reached ``fmax`` MHz: at most
    ``builds`` builds (more only while they miss), the first placed for ``fmax`` with the PLL
    ``REBUILD_HEADROOM`` under it."""
    from dynfix.boards.closure import ClosurePolicy
    return ClosurePolicy(builds=builds, start_mhz=fmax, headroom=REBUILD_HEADROOM)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A GitHub Markdown table as lines."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines


def write_result(name: str, lines: Sequence[str]) -> Path:
    """Write ``bench/results/<name>`` (text ends with one newline) and print it."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    text = "\n".join(lines).rstrip("\n") + "\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    print(text)
    return path


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams["svg.hashsalt"] = "dynfix"
    return plt


def save_fig(fig, name: str) -> Path:
    """Save a figure as a deterministic PNG (no software/date metadata) in results/."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    return path
