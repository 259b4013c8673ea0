"""``dynfix evaluate MODEL --data digits|D.npz``: top-1 accuracy on labelled data.

The float reference by default; with ``--quant Q.yaml`` the bit-exact integer model
(:class:`~dynfix.quant.int_model.IntModel`) under that quantization spec.
"""

from __future__ import annotations

import argparse
import json

from . import MODEL_HELP


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="top-1 accuracy of a model on labelled data",
                       description="Classify the images in DATA with MODEL and report the "
                                   "top-1 accuracy.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--data", "-d", default="digits", metavar="DATA",
                   help="'digits' (the digits test split, default) or D.npz with arrays "
                        "'x' (N x C x H x W float32) and 'y' (integer labels)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (accuracy 0..1, n, correct, model, data, mode)")
    p.add_argument("--quant", "-q", metavar="Q.yaml",
                   help="evaluate the integer model quantized by Q.yaml (dynfix quantize)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands
    r = api.evaluate(args.model, args.data, args.quant)
    result = {"model": r.model, "data": args.data, "mode": r.mode, "n": r.n,
              "correct": r.correct, "accuracy": r.accuracy}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{r.model} ({r.mode}) on {args.data}: top-1 accuracy "
              f"{r.accuracy * 100:.2f} % ({r.correct}/{r.n})")
    return 0
