"""``dynfix synth DIR [--board NAME] [--clock MHZ] [--json]``: build the board top around the
engine that ``dynfix generate`` wrote to DIR into a bitstream (DIR/build/), with yosys and
nextpnr from YoWASP, and report utilization and Fmax. With --clock the design runs from the
board's PLL at the highest frequency it reaches at or below MHZ. Exits non-zero if timing
is not met at the clock the bitstream runs at."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands

    result = api.synth(args.dir, args.board, check_timing=False,
                       fit_check=not args.no_fit_check, clock_mhz=args.clock)
    (Path(args.dir) / "synth.json").write_text(
        json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        print("\n".join(result.lines()))
    api.check_result(result)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help="synthesize a generated engine for a board",
                              description=__doc__)
    p.add_argument("dir", metavar="DIR", help="output folder of dynfix generate")
    p.add_argument("--board", help="board name or board .yaml file (default: the board "
                                   "DIR was generated for with --board, else the default "
                                   "board; see dynfix boards)")
    p.add_argument("--clock", type=float, metavar="MHZ",
                   help="run the design from the board's PLL at the highest frequency it "
                        "reaches at or below MHZ (default: the board's oscillator)")
    p.add_argument("--json", action="store_true",
                   help="print luts, ffs, dsps, brams, fmax_mhz, target_mhz, timing_met, ...")
    p.add_argument("--no-fit-check", action="store_true",
                   help="skip the resource estimate check before synthesis")
    p.set_defaults(func=run)
