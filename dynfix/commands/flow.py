"""``dynfix flow [MODEL] [--board NAME] [--bits SPEC] [--images N] [--sim SIM] [--synth
[--flash-coding none|huffman]] [--output DIR]``: the whole path on one command: quantize -> generate -> simulate (Icarus or
Verilator) -> optional synthesis, progress on stderr, a summary table at the end, everything
kept in DIR."""

from __future__ import annotations

import argparse
import json
import sys

from dynfix.quant.search import METHODS
from dynfix.workflow.options import DEFAULT_IMAGES, SIM_CHOICES
from . import BITS_HELP


def run(args: argparse.Namespace) -> int:
    from dynfix.workflow.run import FlowOptions, run_flow   # deferred: see dynfix.commands
    from dynfix.workflow.report import summary_table

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    opts = FlowOptions(model=args.model, board=args.board, bits=args.bits, images=args.images,
                       synth=args.synth, output=args.output, data=args.data, calib=args.calib,
                       method=args.method, sim=args.sim, flash_coding=args.flash_coding)
    result = run_flow(opts, say)
    if args.json:
        print(json.dumps(dict(result.report, output=str(result.output)), indent=2,
                         sort_keys=True))
    else:
        print(summary_table(result.report, str(result.output)))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("flow", help="the whole flow on one command: quantize, "
                                           "generate, simulate, (synthesize), report",
                              description=__doc__)
    p.add_argument("model", nargs="?", default="digits", metavar="MODEL",
                   help="an .onnx or .yaml model, or a bundled name (default: digits)")
    p.add_argument("--board", help="board name or board .yaml file (default: the default "
                                   "board, see dynfix boards)")
    p.add_argument("--bits", default="8", help=BITS_HELP)
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES, metavar="N",
                   help=f"test images to simulate on the Verilog (default {DEFAULT_IMAGES}; "
                        f"the flow prints an estimate of the time before it starts)")
    p.add_argument("--sim", choices=SIM_CHOICES, default="auto",
                   help="simulator: auto (default) takes Verilator when it is installed and "
                        "the run is long enough for its build to pay off, else Icarus; the "
                        "progress says which and why")
    p.add_argument("--synth", action="store_true",
                   help="also synthesize with yosys + nextpnr (minutes): bitstream, "
                        "resources, Fmax")
    p.add_argument("--flash-coding", choices=("none", "huffman"), default="none",
                   help="with --synth: how the flash image stores the weights of an engine "
                        "that loads them at power-up (as dynfix synth --flash-coding)")
    p.add_argument("--output", "-o", metavar="DIR",
                   help="output folder (default out/flow-MODEL-BOARD); replaced if it holds "
                        "an earlier flow's output")
    p.add_argument("--data", metavar="D.npz",
                   help="test data: digits (default) or D.npz with arrays x (N x C x H x W "
                        "float32) and y (labels; without y, accuracy is not measured)")
    p.add_argument("--calib", metavar="DATA",
                   help="calibration inputs (X.npy or D.npz; default: the test data, or the "
                        "digits calibration split)")
    p.add_argument("--method", choices=METHODS, default="greedy",
                   help="fractional-length search (see dynfix quantize); default greedy")
    p.add_argument("--json", action="store_true",
                   help="print report.json (plus the output folder) on stdout")
    p.set_defaults(func=run)
