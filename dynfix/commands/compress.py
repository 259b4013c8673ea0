"""``dynfix compress MODEL --svd LAYER=RANK --output M2.onnx|M2.yaml``: replace fully connected
layers by low-rank pairs (truncated SVD) before quantization."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from dynfix.errors import DynfixError
from .info import MODEL_HELP


def run(args: argparse.Namespace) -> int:
    from dynfix.quant.load import load_model
    from dynfix.quant.svd import compress, parse_svd

    out = Path(args.output)
    if out.suffix.lower() not in (".onnx", ".yaml", ".yml"):
        raise DynfixError(f"--output {args.output!r}: expected an .onnx or .yaml file name")
    model = load_model(args.model)
    new, reports = compress(model, parse_svd(args.svd))
    if out.suffix.lower() == ".onnx":
        from dynfix.quant.onnx_io import save_onnx
        save_onnx(new, out)
    else:
        from dynfix.quant.yaml_io import save_yaml
        save_yaml(new, out)
    before = model.summary()["total_params"]
    after = new.summary()["total_params"]
    if args.json:
        print(json.dumps({"model": model.name, "output": str(out),
                          "layers": [asdict(r) for r in reports],
                          "params_before": before, "params_after": after}))
        return 0
    for r in reports:
        print(f"{r.layer}: rank {r.rank}, {r.params_before} -> {r.params_after} weights, "
              f"relative error {r.rel_error:.3f}")
    print(f"model {model.name}: {before} -> {after} parameters; wrote {out}")
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
