"""``dynfix boards [--json]``: list the bundled boards and their resources.

``dynfix boards --fit MODEL --quant Q.yaml [--board NAME] [--write engine.yaml]``: choose the
fastest engine for the model that fits each board (or one board), say what limited it, and
optionally write it as an engine config for ``dynfix generate --config``."""

from __future__ import annotations

import argparse
import json

import yaml

from dynfix.boards.registry import Board, list_boards
from dynfix.errors import DynfixError


def _row(b: Board) -> str:
    spram = f"{b.spram.blocks} x {b.spram.bits // 1024} kbit" if b.spram else "-"
    mark = " (default)" if b.default else ""
    return (f"{b.name + mark:<22} {b.device + '-' + b.package:<18} {b.luts:>7} "
            f"{b.dsp.blocks:>4} x {b.dsp.a_bits}x{b.dsp.b_bits:<3} "
            f"{b.bram.blocks:>4} x {b.bram.bits // 1024:>2} kbit  {spram:<14} "
            f"{b.clock_mhz:>5g} MHz  {b.uart_resource}#{b.uart_number}")


def run_fit(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands

    if args.quant is None:
        raise DynfixError("--fit needs --quant Q.yaml (from dynfix quantize)")
    model = api.load_model(args.fit)
    spec = api.load_spec(model, args.quant)
    boards = [api.get_board(args.board)] if args.board else list_boards()
    if args.write and len(boards) != 1:
        raise DynfixError("--write needs one --board")
    results = [api.fit(spec, b, model=model) for b in boards]
    if args.write:
        c = results[0].chosen.config
        with open(args.write, "w") as f:
            yaml.safe_dump(c.choice(), f, sort_keys=False)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    for b, r in zip(boards, results):
        c, t = r.chosen, r.chosen.estimate.total.rounded()
        us = c.cycles / b.target_mhz
        print(f"{b.name}: {c.config.summary()}, {c.config.multipliers_text()}, "
              f"{c.cycles} cycles/image "
              f"({us:.0f} us at {b.target_mhz:g} MHz, an estimate: dynfix synth clocks the "
              f"design from the PLL as fast as it meets timing)")
        spram = (f", {t['sprams']}/{b.spram.blocks} SPRAMs" if b.spram is not None else "")
        print(f"  estimate: {t['luts']}/{b.luts} LUTs, {t['ffs']} FFs, "
              f"{t['dsps']}/{b.dsp.blocks} DSPs, {t['brams']}/{b.bram.blocks} BRAMs{spram}")
        print("  memories: " + "; ".join(f"{name} {where}" for name, where in
                                         c.estimate.memories.items()))
        print(f"  limited by {r.limit}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.fit:
        return run_fit(args)
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
    p.add_argument("--fit", metavar="MODEL", help="fit an engine for MODEL to the boards")
    p.add_argument("--quant", metavar="Q.yaml", help="with --fit: the model's quantization")
    p.add_argument("--board", help="with --fit: only this board (name or .yaml file)")
    p.add_argument("--write", metavar="engine.yaml",
                   help="with --fit and --board: write the chosen engine (tn, tm, im2col, "
                        "multiplier, lut_products, w_spram, m_spram, w_bulk, bulk_bits, "
                        "bulk_store)")
    p.set_defaults(func=run)
