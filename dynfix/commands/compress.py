"""``dynfix compress MODEL --svd LAYER=RANK --output M2.onnx|M2.yaml``: replace fully connected
layers by low-rank pairs (truncated SVD) before quantization. ``--lowrank LAYER=RANK`` and/or
``--speedup X`` (with ``--calib DATA``) split convolutions into a k x k conv into RANK channels
and a 1 x 1 conv, fitted on the calibration responses (Zhang et al.: docs/compression.md)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from . import MODEL_HELP

#: :data:`dynfix.quant.lowrank_conv.METHODS`, spelled here so ``--help`` loads no numpy.
METHODS = ("asymmetric", "nonlinear", "linear", "svd")


def run(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands
    r = api.compress(args.model, args.svd, args.output,
                     lowrank=",".join(args.lowrank) if args.lowrank else None,
                     speedup=args.speedup, calib=args.calib, lowrank_method=args.lowrank_method)
    name = r.model.name                 # compress keeps the model's name
    if args.json:
        print(json.dumps({"model": name, "output": str(r.path),
                          "layers": [asdict(x) for x in r.layers],
                          "conv_layers": [asdict(x) for x in r.conv_layers],
                          "skipped": r.skipped, "conv_macs_before": r.conv_macs_before,
                          "conv_macs_after": r.conv_macs_after, "macs_before": r.macs_before,
                          "macs_after": r.macs_after,
                          "params_before": r.params_before, "params_after": r.params_after}))
        return 0
    for x in r.conv_layers:
        print(f"{x.layer}: rank {x.rank}/{x.filters}, {x.macs_before} -> {x.macs_after} MACs, "
              f"{x.params_before} -> {x.params_after} parameters, relative error "
              f"{x.error:.3f} ({x.method}{', after the ReLU' if x.relu else ''}; weight SVD "
              f"{x.err_svd:.3f}, linear {x.err_linear:.3f}, nonlinear "
              f"{x.err_nonlinear:.3f}, asymmetric {x.err_asymmetric:.3f})")
    for layer, why in r.skipped.items():
        print(f"{layer}: not decomposed ({why})")
    if r.conv_layers:
        print(f"convolutions: {r.conv_macs_before} -> {r.conv_macs_after} MACs "
              f"({r.conv_macs_before / max(r.conv_macs_after, 1):.2f}x)")
    for x in r.layers:
        print(f"{x.layer}: rank {x.rank}, {x.params_before} -> {x.params_after} weights, "
              f"relative error {x.rel_error:.3f}")
    print(f"model {name}: {r.params_before} -> {r.params_after} parameters, {r.macs_before} "
          f"-> {r.macs_after} MACs; wrote {r.path}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("compress", help="low-rank fully connected and conv layers",
                              description=__doc__)
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--svd", action="append", metavar="LAYER=RANK",
                   help="factor this Linear layer through a RANK-wide bottleneck "
                        "(repeatable)")
    p.add_argument("--lowrank", action="append", metavar="LAYER=RANK[,...]",
                   help="split this conv into a k x k conv into RANK channels and a 1 x 1 "
                        "conv, fitted on --calib (repeatable)")
    p.add_argument("--speedup", type=float, metavar="X",
                   help="choose the ranks of the other convs so the convolutions' MACs fall "
                        "X-fold (greedy on the responses' PCA energy; needs --calib)")
    p.add_argument("--calib", metavar="DATA",
                   help="calibration inputs for --lowrank/--speedup: digits (its calib "
                        "split), X.npy or D.npz")
    p.add_argument("--lowrank-method", choices=METHODS, default="asymmetric",
                   help="how the conv factors are fitted: asymmetric (default: nonlinear "
                        "and correcting earlier layers' error), nonlinear, linear (PCA of "
                        "the responses) or svd (of the weights, data-blind)")
    p.add_argument("--output", "-o", required=True, metavar="M2.onnx|M2.yaml",
                   help="where to write the compressed model")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.set_defaults(func=run)
