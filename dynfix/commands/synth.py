"""``dynfix synth DIR [--board NAME] [--clock auto|MHZ|oscillator] [--flash-coding
none|huffman] [--router router1|router2] [--json]``: build the board top around the engine
that ``dynfix generate`` wrote to DIR into a bitstream (DIR/build/), with yosys and nextpnr
from YoWASP, and report utilization, Fmax and the clock the bitstream runs at. By default
the design runs from the board's PLL at the fastest clock that meets timing (a first
place-and-route at the board's highest clock, then rebuilds just under the Fmax it
reports); --clock MHZ forces the PLL's fastest setting at or below MHZ, --clock oscillator
the board's oscillator. An engine that loads its weights from the SPI flash at power-up
gets its flash image beside the bitstream; --flash-coding huffman stores it Huffman-coded,
decoded by the bitstream at load, and reports the payload and coded bytes, their ratio and
the load's cycles. --router router2 routes with nextpnr's router2 (for a placement router1
leaves congested). Exits non-zero if timing is not met at the clock the bitstream runs at."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dynfix.boards.registry import ROUTERS


def run(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands

    result = api.synth(args.dir, args.board, check_timing=False,
                       fit_check=not args.no_fit_check, clock=args.clock,
                       flash_coding=args.flash_coding, router=args.router)
    (Path(args.dir) / "synth.json").write_text(
        json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        print("\n".join(result.lines()))
    api.check_result(result)
    return 0


def clock_arg(text: str) -> float | str:
    """``--clock``'s value: ``auto``, ``oscillator`` (or ``osc``), or a positive MHz."""
    word = text.strip().lower()
    if word in ("auto", "oscillator", "osc"):
        return "oscillator" if word == "osc" else word
    try:
        mhz = float(word)
    except ValueError:
        mhz = 0.0
    if not mhz > 0 or mhz != mhz or mhz == float("inf"):
        raise argparse.ArgumentTypeError(f"expected auto, oscillator or a clock in MHz, not "
                                         f"{text!r}")
    return mhz


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help="synthesize a generated engine for a board",
                              description=__doc__)
    p.add_argument("dir", metavar="DIR", help="output folder of dynfix generate")
    p.add_argument("--board", help="board name or board .yaml file (default: the board "
                                   "DIR was generated for with --board, else the default "
                                   "board; see dynfix boards)")
    p.add_argument("--clock", type=clock_arg, default="auto", metavar="auto|MHZ|oscillator",
                   help="auto (default): the fastest PLL clock that meets timing, found by "
                        "rebuilding under the reported Fmax; MHZ: the PLL's fastest setting "
                        "at or below MHZ, one build; oscillator: the board's oscillator, no "
                        "PLL")
    p.add_argument("--flash-coding", choices=("none", "huffman"), default="none",
                   help="how the flash image stores the weights of an engine that loads them "
                        "at power-up: none (default), or huffman (Huffman-coded, smaller and "
                        "faster to load, decoded by the bitstream; not for bulk_store: flash)")
    p.add_argument("--router", choices=ROUTERS, default=None,
                   help="nextpnr's router for every build (default: the board file's "
                        "synth: router, router1); router2 finishes placements router1 "
                        "leaves congested for an hour, usually at a lower Fmax")
    p.add_argument("--json", action="store_true",
                   help="print luts, ffs, dsps, brams, fmax_mhz, target_mhz, timing_met, ...")
    p.add_argument("--no-fit-check", action="store_true",
                   help="skip the resource estimate check before synthesis")
    p.set_defaults(func=run)
