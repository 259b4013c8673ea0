"""``dynfix boards [--json]``: list the bundled boards and their resources."""

from __future__ import annotations

import argparse
import json

from dynfix.boards.registry import Board, list_boards


def _row(b: Board) -> str:
    spram = f"{b.spram.blocks} x {b.spram.bits // 1024} kbit" if b.spram else "-"
    mark = " (default)" if b.default else ""
    return (f"{b.name + mark:<22} {b.device + '-' + b.package:<18} {b.luts:>7} "
            f"{b.dsp.blocks:>4} x {b.dsp.a_bits}x{b.dsp.b_bits:<3} "
            f"{b.bram.blocks:>4} x {b.bram.bits // 1024:>2} kbit  {spram:<14} "
            f"{b.clock_mhz:>5g} MHz  {b.uart_resource}#{b.uart_number}")


def run(args: argparse.Namespace) -> int:
    boards = list_boards()
    if args.json:
        print(json.dumps([b.summary() for b in boards], indent=2))
        return 0
    print(f"{'board':<22} {'FPGA':<18} {'LUTs':>7} {'DSP blocks':<13} "
          f"{'block RAM':<16} {'SPRAM':<14} {'clock':>9}  UART")
    for b in boards:
        print(_row(b))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("boards", help="list the supported boards and their resources",
                              description=__doc__)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
