"""``dynfix infer MODEL --input X.npy --output Y.npy``: run a batch through the model.

Today this is the float reference (:mod:`dynfix.quant.float_model`). The quantizer adds
``--quant Q.yaml`` (bit-exact integer model) and ``--raw`` (integer outputs) here: see the
``QUANT HOOK`` marks below.
"""

from __future__ import annotations

import argparse

import numpy as np

from dynfix.errors import DynfixError
from dynfix.fileio import atomic_open
from dynfix.quant.datasets import load_data
from dynfix.quant.float_model import predict
from dynfix.quant.ir import Model
from dynfix.quant.load import load_model

from .info import MODEL_HELP


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="run a batch of inputs through a model",
                       description="Run the inputs in X (.npy, or the 'x' array of an .npz; "
                                   "'digits' is the digits test split) through MODEL and "
                                   "save the outputs, N x ..., float32, to Y.npy.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--input", "-i", required=True, metavar="X",
                   help="inputs: X.npy (N x C x H x W, or N x F), D.npz or 'digits'")
    p.add_argument("--output", "-o", required=True, metavar="Y.npy",
                   help="where to write the outputs (.npy; written atomically)")
    # QUANT HOOK: the quantizer helper adds `--quant Q.yaml` and `--raw` arguments here.
    p.set_defaults(func=run)


def outputs(model: Model, x: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    """The model's outputs for ``x``.

    QUANT HOOK: with ``--quant Q.yaml`` this runs the integer model instead (and with
    ``--raw`` returns its integers); the float reference is the default.
    """
    return predict(model, x)


def run(args: argparse.Namespace) -> int:
    if not args.output.endswith(".npy"):
        raise DynfixError(f"--output {args.output!r}: expected a .npy file name")
    model = load_model(args.model)
    x, _ = load_data(args.input, split="test", need_labels=False)
    y = outputs(model, x, args)
    with atomic_open(args.output, "wb") as f:
        np.save(f, y, allow_pickle=False)
    print(f"wrote {args.output}: {' x '.join(map(str, y.shape))} {y.dtype}")
    return 0
