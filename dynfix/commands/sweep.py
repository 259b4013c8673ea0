"""``dynfix sweep MODEL [--data D] [--boards B1,B2] [--bits 8,8/4/4] [--candidates N]
[--seeds K] [--synth/--no-synth] [--router router1|router2]
[--scheduler tcp://HOST:8786 | --workers W] [--resume] [--output DIR]``: a design-space
sweep on Dask. Every bit width is quantized once; per board the fit's N best engines by
estimate are generated and simulated bit-exact on a few test images, then synthesized with
nextpnr seeds 1..K (the timing closure on the board's PLL for each). Each stage is a Dask
task: on a local cluster of worker processes (one per core), or on the scheduler given (a
cluster of machines; see docs/sweep.md for what a worker needs). Each finished point is
written to DIR/points/ as it comes in; a point that fails is recorded with its reason and
the sweep goes on; Ctrl-C or SIGTERM stops the workers and keeps the finished points, and
--resume goes on from them. At the end: DIR/results.md and results.json (every point, the
Pareto front of latency, LUTs and accuracy per board, the chosen design), DIR/pareto.png,
and the chosen designs' folders (the others removed). Progress on stderr, the table on
stdout. Exit status: 0 when every point finished, 3 when the sweep ran to the end but some
points failed (each recorded with its reason), 1 on an error that stopped it, 130 / 143 when
interrupted."""

from __future__ import annotations

import argparse
import sys

from dynfix.boards.registry import ROUTERS
from dynfix.quant.search import METHODS
from dynfix.workflow.options import SIM_CHOICES, SWEEP_IMAGES as DEFAULT_IMAGES
from . import BITS_HELP, MODEL_HELP

#: Exit status of a sweep that ran to the end with failed points.
SOME_FAILED = 3


def _list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def run(args: argparse.Namespace) -> int:
    from dynfix.workflow.sweep import sweep       # deferred: see dynfix.commands

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = sweep(args.model, args.data, boards=args.boards, bits=args.bits,
                   candidates=args.candidates, seeds=args.seeds, synth=args.synth,
                   images=args.images, output=args.output, scheduler=args.scheduler,
                   workers=args.workers, resume=args.resume, calib=args.calib,
                   method=args.method, sim=args.sim, clock=args.clock, router=args.router,
                   max_drop=args.max_drop, keep_all=args.keep_all, progress=say)
    if args.json:
        print((result.output / "results.json").read_text(), end="")
    else:
        print(result.table)
    for board, c in result.chosen.items():
        say(f"sweep: {board}: chosen {c['id']} ({c['design']})" if c else
            f"sweep: {board}: no point finished")
    failed = len(result.failed)
    n = len(result.points)
    say(f"sweep: {n} point{'s' * (n != 1)} ({len(result.computed)} run now, "
        f"{len(result.reused)} from before), {failed} failed; results in "
        f"{result.output}/results.md")
    return SOME_FAILED if failed else 0


def register(subparsers) -> None:
    from .synth import clock_arg

    p = subparsers.add_parser("sweep", help="design-space sweep on Dask: bit widths x engine "
                                            "candidates x seeds, Pareto front",
                              description=__doc__)
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--data", metavar="D.npz",
                   help="test data: digits (default) or D.npz with arrays x and y")
    p.add_argument("--calib", metavar="DATA",
                   help="calibration inputs (X.npy or D.npz; default: the test data)")
    p.add_argument("--boards", type=_list, metavar="B1,B2",
                   help="boards (names or board .yaml files), comma-separated (default: the "
                        "default board)")
    p.add_argument("--bits", type=_list, default=["8"], metavar="SPEC,SPEC",
                   help="bit widths to sweep, comma-separated (default 8), each "
                        + BITS_HELP.split(": ", 1)[1].removesuffix("; default 8"))
    p.add_argument("--candidates", type=int, default=1, metavar="N",
                   help="engines per board and bit width: the fit's choice and its N-1 "
                        "runners-up by estimated cycles (default 1)")
    p.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="nextpnr placement seeds 1..K per engine (default 1)")
    p.add_argument("--synth", action=argparse.BooleanOptionalAction, default=True,
                   help="synthesize (default); --no-synth: latency at the board's oscillator "
                        "and LUTs from the estimate, labelled as such")
    p.add_argument("--clock", type=clock_arg, default="auto", metavar="auto|MHZ|oscillator",
                   help="the clock of each build, as in dynfix synth (default auto: the "
                        "timing closure on the PLL)")
    p.add_argument("--router", choices=ROUTERS, default=None,
                   help="nextpnr's router for every build, as in dynfix synth (default: the "
                        "board file's, router1)")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES, metavar="N",
                   help=f"test images simulated bit-exact per engine (default "
                        f"{DEFAULT_IMAGES}; 0: no simulation, cycles from the estimate)")
    p.add_argument("--sim", choices=SIM_CHOICES, default="auto",
                   help="simulator, as in dynfix flow (default auto)")
    p.add_argument("--method", choices=METHODS, default="greedy",
                   help="fractional-length search (see dynfix quantize); default greedy")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="an existing Dask scheduler (default: a local cluster)")
    p.add_argument("--workers", type=int, metavar="W",
                   help="worker processes of the local cluster (default: one per core)")
    p.add_argument("--output", "-o", metavar="DIR",
                   help="the sweep folder (default out/sweep-MODEL)")
    p.add_argument("--resume", action="store_true",
                   help="go on with the sweep in DIR: its finished points are kept, not "
                        "run again (failed ones included: remove their points/ID.json to "
                        "run them again)")
    p.add_argument("--max-drop", type=float, default=1.0, metavar="X",
                   help="accuracy the chosen design may give up against the best on the "
                        "Pareto front: percentage points, or dB for SQNR (default 1)")
    p.add_argument("--keep-all", action="store_true",
                   help="keep every design's folder and build, not only the chosen ones")
    p.add_argument("--json", action="store_true", help="print results.json on stdout")
    p.set_defaults(func=run)
