"""``dynfix infer MODEL --input X.npy --output Y.npy``: run a batch through the model.

The float reference (:mod:`dynfix.quant.float_model`) by default; with ``--quant Q.yaml`` the
bit-exact integer model, its outputs dequantized to float32 (``--raw``: the int64 integers).
"""

from __future__ import annotations

import argparse

import numpy as np

from dynfix.errors import DynfixError
from dynfix.fileio import atomic_open

from . import MODEL_HELP


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="run a batch of inputs through a model",
                       description="Run the inputs in X (.npy, or the 'x' array of an .npz; "
                                   "'digits' is the digits test split) through MODEL and "
                                   "save the outputs, N x ..., float32, to Y.npy.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--input", "-i", required=True, metavar="X",
                   help="inputs in the model's layout (dynfix info: N x C x H x W, "
                        "N x H x W x C, N x C x L, N x L x C or N x F): X.npy, D.npz or "
                        "'digits'")
    p.add_argument("--output", "-o", required=True, metavar="Y.npy",
                   help="where to write the outputs (.npy; written atomically)")
    p.add_argument("--quant", "-q", metavar="Q.yaml",
                   help="run the integer model quantized by Q.yaml (dynfix quantize)")
    p.add_argument("--raw", action="store_true",
                   help="with --quant: save the integer outputs (int64) instead of their "
                        "dequantized values")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands

    if not args.output.endswith(".npy"):
        raise DynfixError(f"--output {args.output!r}: expected a .npy file name")
    model = api.load_model(args.model)
    x, _ = api.load_inputs(args.input, split="test")
    y = api.infer(model, x, args.quant, args.raw)
    with atomic_open(args.output, "wb") as f:
        np.save(f, y, allow_pickle=False)
    print(f"wrote {args.output}: {' x '.join(map(str, y.shape))} {y.dtype}")
    return 0
