"""``dynfix compress MODEL --svd LAYER=RANK --output M2.onnx|M2.yaml``: replace fully connected
layers by low-rank pairs (truncated SVD) before quantization."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from . import MODEL_HELP


def run(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands
    r = api.compress(args.model, args.svd, args.output)
    name = r.model.name                 # compress keeps the model's name
    if args.json:
        print(json.dumps({"model": name, "output": str(r.path),
                          "layers": [asdict(x) for x in r.layers],
                          "params_before": r.params_before, "params_after": r.params_after}))
        return 0
    for x in r.layers:
        print(f"{x.layer}: rank {x.rank}, {x.params_before} -> {x.params_after} weights, "
              f"relative error {x.rel_error:.3f}")
    print(f"model {name}: {r.params_before} -> {r.params_after} parameters; wrote {r.path}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("compress", help="low-rank (SVD) fully connected layers",
                              description=__doc__)
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--svd", action="append", required=True, metavar="LAYER=RANK",
                   help="factor this Linear layer through a RANK-wide bottleneck "
                        "(repeatable)")
    p.add_argument("--output", "-o", required=True, metavar="M2.onnx|M2.yaml",
                   help="where to write the compressed model")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.set_defaults(func=run)
