"""``dynfix generate MODEL --quant Q.yaml --board NAME | --config engine.yaml --output DIR``:
compile a quantized model for the engine and write its Verilog (memories initialised with the
model), the program and memory images, and ``DIR/report.json``."""

from __future__ import annotations

import argparse
import json

from . import MODEL_HELP


def run(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands
    from dynfix.hw.cycle_model import per_layer
    g = api.generate(args.quant, args.output, args.board, config=args.config,
                     model=args.model)
    rep = g.report
    if args.json:
        print(json.dumps(rep, indent=2, sort_keys=True))
        return 0
    e, est = rep["engine"], rep["estimate"]
    print(f"{g.model.name}: engine {g.config.summary()} ({g.config.multipliers_text()}, "
          f"{e['data_bits']}-bit data, "
          f"{e['weight_bits']}-bit weights, {e['acc_bits']}-bit accumulators)")
    for r in per_layer(est["layers"]):
        waits, dma = r["waits"], r["dma"]
        bound = " (bound by the bulk memory)" if 2 * (waits + dma) >= r["cycles"] else ""
        util = r["macs"] / (r["cycles"] * g.config.multipliers)
        print(f"  {r['name']:<12} {r['kind']:<6} {r['cycles']:>9} cycles  "
              f"{100 * util:5.1f} % MAC utilization"
              + (f", in {r['entries']} strips" if r["entries"] > 1 else "")
              + (f", {dma} moving maps" if dma else "")
              + (f", {waits} waiting for weights" if waits else "") + bound)
    if "bulk_bytes" in est:
        print(f"  weights from bulk memory ({g.config.bulk_store.value}): "
              f"{est['bulk_bytes']} bytes per image")
    if "map_bytes" in est:
        print(f"  maps through bulk memory ({g.config.bulk_store.value}): "
              f"{est['map_bytes']} bytes per image")
    print(f"  {est['cycles_per_image']} cycles per image; wrote {args.output}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate the accelerator Verilog for a model",
                              description=__doc__)
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--quant", required=True, metavar="Q.yaml",
                   help="the quantization spec from dynfix quantize")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--board", help="fit the fastest engine to this board (see dynfix boards)")
    target.add_argument("--config", metavar="engine.yaml",
                        help="engine parallelism k, tn, tm (and optional width/depth bounds)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)
