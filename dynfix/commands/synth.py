"""``dynfix synth DIR [--board NAME] [--json]``: build the board top around the engine that
``dynfix generate`` wrote to DIR into a bitstream (DIR/build/), with yosys and nextpnr from
YoWASP, and report utilization and Fmax. Exits non-zero if timing is not met."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from dynfix.boards.design import board_top, load_generated
    from dynfix.boards.registry import get_board
    from dynfix.boards.synth import check_result, synthesize

    gen = load_generated(args.dir)
    # Default: the board the engine was fitted to (generate --board), else the default one.
    fitted_to = gen.report.get("board")
    board = get_board(args.board or (fitted_to if isinstance(fitted_to, str) else None))
    if not args.no_fit_check:
        from dynfix.boards.fit import check_generated_fits
        check_generated_fits(gen, board)
    build_dir = Path(args.dir) / "build"
    result = synthesize(board_top(gen, board), board, build_dir, check_timing=False)
    (Path(args.dir) / "synth.json").write_text(
        json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        print("\n".join(result.lines()))
    check_result(result)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help="synthesize a generated engine for a board",
                              description=__doc__)
    p.add_argument("dir", metavar="DIR", help="output folder of dynfix generate")
    p.add_argument("--board", help="board name or board .yaml file (default: the board "
                                   "DIR was generated for with --board, else the default "
                                   "board; see dynfix boards)")
    p.add_argument("--json", action="store_true",
                   help="print luts, ffs, dsps, brams, fmax_mhz, target_mhz, timing_met, ...")
    p.add_argument("--no-fit-check", action="store_true",
                   help="skip the resource estimate check before synthesis")
    p.set_defaults(func=run)
