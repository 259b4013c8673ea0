"""Wall time of ``dynfix sweep`` on a local Dask cluster: the same points with 2 worker
processes against 1 (a serial run), and the ratio.

Two sweeps of the bundled digits model on the iCEBreaker:

* ``simulate``: 8 and 6 bits x 3 engine candidates, no synthesis (quantize, fit, generate,
  3 images bit-exact under Icarus): 6 points of seconds each;
* ``synthesize``: 8 bits x 2 candidates x 2 nextpnr seeds at a fixed PLL clock (one
  place-and-route per point, no timing closure, so each point costs the same in both runs):
  4 points of a minute or two each.

Each sweep runs 1, 2, 2 and 1 worker(s) (alternating, so that a change in the machine's
load falls on both). The cluster's start and stop (a few seconds) are timed apart from the
sweep. Every figure is a wall time on a shared 2-core machine and changes from run to run:
the table records the load average around each run and the other processes that were using
a core.
Writes ``bench/results/sweep_speed.md``.
Run: ``.venv/bin/python bench/sweep_speed.py [--quick]`` (``--quick``: the simulate sweep
only).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table, write_result  # noqa: E402

import dynfix  # noqa: E402

#: The two sweeps: name -> dynfix.sweep arguments.
SWEEPS = {
    "simulate": dict(boards=["icebreaker"], bits=["8", "6"], candidates=3, synth=False,
                     images=3),
    "synthesize": dict(boards=["icebreaker"], bits=["8"], candidates=2, seeds=2, synth=True,
                       images=1, clock=30.0),
}


def busy_processes(seconds: float = 1.0) -> list[str]:
    """Processes outside this one's tree using at least half a core, as ``name (pid)``."""
    import psutil
    mine = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    procs = [p for p in psutil.process_iter(["name", "cmdline"]) if p.pid not in mine]
    for p in procs:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(seconds)
    out = []
    for p in procs:
        try:
            if p.cpu_percent(None) >= 50:
                cmd = p.info["cmdline"] or [p.info["name"]]
                name = next((Path(c).name for c in cmd if "yowasp" in c or "dynfix" in c
                             or c.endswith(".py")), Path(cmd[0]).name)
                out.append(f"{name} ({p.pid})")
        except psutil.Error:
            pass
    return out


def run(name: str, workers: int) -> dict:
    """One sweep into a fresh folder on a fresh LocalCluster of ``workers`` processes (as
    ``dynfix sweep`` starts one), timed: the cluster's start and stop, the sweep itself, and
    from Dask's task stream the time the workers spent in the sweep's tasks."""
    import logging
    from distributed import Client, LocalCluster, get_task_stream

    load = os.getloadavg()[0]
    busy = busy_processes()
    with tempfile.TemporaryDirectory(prefix=f"sweep-speed-{name}-") as tmp:
        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               memory_limit=0, dashboard_address="127.0.0.1:0",
                               silence_logs=logging.ERROR)
        client = Client(cluster)
        started = time.perf_counter() - t0
        with get_task_stream(client) as stream:
            t1 = time.perf_counter()
            result = dynfix.sweep("digits", "digits", output=Path(tmp) / "s",
                                  scheduler=cluster.scheduler_address, **SWEEPS[name])
            wall = time.perf_counter() - t1
        t2 = time.perf_counter()
        client.close()
        cluster.close()
        stopped = time.perf_counter() - t2
    task_s = sum(stop - start for t in stream.data for s in t["startstops"]
                 if s["action"] == "compute" for start, stop in [(s["start"], s["stop"])])
    return {"sweep": name, "workers": workers, "points": len(result.points),
            "failed": len(result.failed), "wall": wall, "overhead": started + stopped,
            "tasks": task_s, "load": load, "load_after": os.getloadavg()[0], "busy": busy}


#: The runs of each sweep, in order: 1 and 2 workers alternately (ABBA), so that a change in
#: the machine's load during the bench falls on both alike.
ORDER = (1, 2, 2, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the simulate sweep only")
    args = ap.parse_args()
    names = ["simulate"] if args.quick else list(SWEEPS)
    runs = []
    for name in names:
        for workers in ORDER:
            r = run(name, workers)
            print(f"{name}, {workers} worker(s): {r['wall']:.1f} s (+ {r['overhead']:.1f} s "
                  f"cluster), tasks {r['tasks']:.1f} s, load {r['load']:.2f}", file=sys.stderr)
            runs.append(r)
    rows, summary = [], []
    for r in runs:
        rows.append([r["sweep"], f"{r['points']} ({r['failed']} failed)", r["workers"],
                     f"{r['wall']:.1f} s", f"{r['overhead']:.1f} s", f"{r['tasks']:.1f} s",
                     f"{r['tasks'] / r['wall']:.2f}", f"{r['load']:.2f} / {r['load_after']:.2f}",
                     ", ".join(r["busy"]) or "none"])
    for name in names:
        mean = {w: sum(r["wall"] for r in runs if r["sweep"] == name and r["workers"] == w)
                / ORDER.count(w) for w in (1, 2)}
        whole = {w: sum(r["wall"] + r["overhead"] for r in runs
                        if r["sweep"] == name and r["workers"] == w) / ORDER.count(w)
                 for w in (1, 2)}
        summary.append([name, f"{mean[1]:.1f} s", f"{mean[2]:.1f} s",
                        f"**{mean[1] / mean[2]:.2f}x**", f"{whole[1] / whole[2]:.2f}x"])
    lines = [
        "# Sweep speed: 2 Dask workers against 1 (wall time)", "",
        "Generated by `bench/sweep_speed.py`. **Wall times: expected to vary** between runs: "
        "the machine is shared with other jobs (a long place-and-route of the MLPerf bench and "
        "other test runs while this was measured: see the load column).",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; dask {_version('dask')}, distributed "
        f"{_version('distributed')}. Model: bundled digits on the iCEBreaker.",
        "",
        "* `simulate`: bits 8 and 6 x 3 engine candidates, no synthesis: quantize, fit, "
        "generate and 3 images under Icarus per point (6 points of a few seconds).",
        "* `synthesize`: bits 8 x 2 candidates x nextpnr seeds 1 and 2, each built once at "
        "30 MHz from the PLL (no timing closure): 4 points of about a minute.",
        "",
        "Each sweep ran 4 times into a fresh folder on a fresh LocalCluster, with 1, 2, 2 and 1 "
        "worker processes (one thread each, as `dynfix sweep` starts them).",
        "",
        "## Speed-up",
        "",
        *md_table(["sweep", "1 worker (mean)", "2 workers (mean)", "speed-up",
                   "with the cluster's start and stop"], summary),
        "",
        "## Runs",
        "",
        "Sweep: `dynfix.sweep` from call to return. Cluster: the LocalCluster's start and stop. "
        "Task time: the time the workers spent computing the sweep's tasks (Dask's task "
        "stream); parallelism: task time over the sweep's wall time (at most the workers; "
        "a task's time grows when other jobs share the cores). Load: the 1-minute load "
        "average before / after the run; busy: other processes using at least half a core "
        "before it.",
        "",
        *md_table(["sweep", "points", "workers", "sweep", "cluster", "task time",
                   "parallelism", "load", "busy"], rows),
        "",
    ]
    write_result("sweep_speed.md", lines)


def _version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


if __name__ == "__main__":
    main()
