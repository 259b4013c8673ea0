"""``dynfix run-board --port /dev/ttyUSB1 --design DIR --data digits [--images N]``: send
images to a board running the dynfix bitstream, read back logits, class and cycle count, and
compare them bit for bit with the integer model. ``--design`` is the folder dynfix generate
wrote for the bitstream (its model, quantization and the order the engine takes its input
in: windows or strips); ``--model`` and ``--quant`` instead give the model alone. For an
engine that loads its weights from the flash, program weights.flash.bin first (the commands
dynfix synth printed)."""

from __future__ import annotations

import argparse
import json


def run(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands
    r = api.run_board(args.port, args.quant, args.model, args.data, args.images, args.baud,
                      args.timeout, design=args.design)
    summary = r.summary()
    if args.json:
        print(json.dumps({"summary": summary, "images": r.images}, indent=2))
    else:
        for row in r.images[:10]:
            print(f"  image {row['index']}: class {row['predicted']} (label {row['label']}), "
                  f"{row['cycles']} cycles, {'bit-exact' if row['bit_exact'] else 'MISMATCH'}")
        acc = f", accuracy {summary['accuracy']:.1%}" if "accuracy" in summary else ""
        print(f"{summary['images']} images in {r.seconds:.1f} s: {r.bit_exact} bit-exact with "
              f"the integer model{acc}, {summary['cycles']} engine cycles per image")
    return 0 if r.bit_exact == len(r.images) else 1


def register(subparsers) -> None:
    p = subparsers.add_parser("run-board", help="run images on a board over its serial port",
                              description=__doc__)
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB1")
    p.add_argument("--design", metavar="DIR",
                   help="the folder dynfix generate wrote for the bitstream")
    p.add_argument("--model", default="digits",
                   help="without --design: the model the bitstream was built for")
    p.add_argument("--quant", metavar="Q.yaml", help="without --design: its quantization")
    p.add_argument("--data", default="digits", help="digits, X.npy or D.npz")
    p.add_argument("--images", type=int, help="how many images (default: all)")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a reply")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
