"""``dynfix evaluate MODEL --data digits|D.npz [--quant Q.yaml] [--metric M]``: how good the
model's outputs are.

The float reference by default: its top-1 accuracy on labelled data. With ``--quant Q.yaml``
the bit-exact integer model (:class:`~dynfix.quant.int_model.IntModel`) under that spec: its
top-1 accuracy (labels, class outputs), top-1 agreement with the float model and output SQNR
against the float model. ``--metric`` picks the headline measure; ``auto`` is accuracy for a
class output with labels, agreement without labels, output SQNR for any other output (an
autoencoder's reconstruction: see ``dynfix.quant.fidelity``).
"""

from __future__ import annotations

import argparse
import json

from dynfix.quant.fidelity import METRICS
from dynfix.quant.qspec_io import finite_or_none
from . import MODEL_HELP

NAMES = {"accuracy": "top-1 accuracy", "agreement": "top-1 agreement with the float model",
         "sqnr": "output SQNR against the float model"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy, or fidelity to the float model, on data",
                       description="Run MODEL (float, or the integer model with --quant) on "
                                   "DATA and report top-1 accuracy and, with --quant, top-1 "
                                   "agreement and output SQNR against the float model.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--data", "-d", default="digits", metavar="DATA",
                   help="'digits' (the digits test split, default), D.npz with arrays 'x' "
                        "(float32, in the model's layout: N x C x H x W, N x H x W x C for an "
                        "NHWC model; see dynfix info) and 'y' (integer labels; optional with "
                        "--quant) or X.npy")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (metric and value; accuracy, correct, "
                        "agreement 0..1 and sqnr_db where measured; n, model, data, mode, "
                        "output)")
    p.add_argument("--quant", "-q", metavar="Q.yaml",
                   help="evaluate the integer model quantized by Q.yaml (dynfix quantize)")
    p.add_argument("--metric", choices=METRICS, default="auto",
                   help="the headline measure: accuracy (top-1 against labels), agreement "
                        "(top-1 with the float model), sqnr (output SQNR against the float "
                        "model, dB); auto (default): accuracy for class outputs with labels, "
                        "agreement without, sqnr for other outputs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands
    r = api.evaluate(args.model, args.data, args.quant, args.metric)
    result = {"model": r.model, "data": args.data, "mode": r.mode, "n": r.n,
              "output": r.output, "metric": r.metric,
              "value": finite_or_none(r.value)}
    if r.correct is not None:
        result.update(correct=r.correct, accuracy=r.accuracy)
    if r.mode == "quant":
        result.update(agreement=r.agreement, sqnr_db=finite_or_none(r.sqnr_db))
    if args.json:
        print(json.dumps(result))
        return 0
    parts = []
    if r.correct is not None:
        parts.append(f"top-1 accuracy {r.accuracy * 100:.2f} % ({r.correct}/{r.n})")
    if r.mode == "quant":
        parts.append(f"top-1 agreement with float {r.agreement * 100:.2f} %")
        parts.append(f"output SQNR {r.sqnr_db:.2f} dB")
    print(f"{r.model} ({r.mode}) on {args.data}, {r.n} inputs: {'; '.join(parts)} "
          f"[measure: {NAMES[r.metric]}]")
    return 0
