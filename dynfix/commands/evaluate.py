"""``dynfix evaluate MODEL --data digits|D.npz``: top-1 accuracy on labelled data.

The float reference by default; with ``--quant Q.yaml`` the bit-exact integer model
(:class:`~dynfix.quant.int_model.IntModel`) under that quantization spec.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from dynfix.errors import DynfixError
from dynfix.quant.datasets import load_data
from dynfix.quant.float_model import predict
from dynfix.quant.ir import Model
from dynfix.quant.load import load_model

from .info import MODEL_HELP


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


def scores(model: Model, x: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    """Class scores, N x classes (integer logits with ``--quant``)."""
    if args.quant:
        from dynfix.quant.int_model import IntModel
        from dynfix.quant.qspec_io import load_qspec
        return IntModel(model, load_qspec(args.quant, model)).logits(x)
    return predict(model, x)


def mode(args: argparse.Namespace) -> str:
    """Which model was evaluated: 'float', or 'quant' with --quant."""
    return "quant" if args.quant else "float"


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    x, y = load_data(args.data, split="test", need_labels=True)
    s = scores(model, x, args).reshape(len(x), -1)
    classes = s.shape[1]
    if y.min() < 0 or y.max() >= classes:
        raise DynfixError(f"labels range from {y.min()} to {y.max()}, but the model has "
                          f"{classes} outputs")
    correct = int(np.sum(s.argmax(axis=1) == y))
    result = {"model": model.name, "data": args.data, "mode": mode(args), "n": int(len(y)),
              "correct": correct, "accuracy": correct / len(y)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{model.name} ({result['mode']}) on {args.data}: top-1 accuracy "
              f"{result['accuracy'] * 100:.2f} % ({correct}/{len(y)})")
    return 0
