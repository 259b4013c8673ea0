"""``dynfix generate MODEL --quant Q.yaml --board NAME | --config engine.yaml --output DIR``:
compile a quantized model for the engine and write its Verilog (memories initialised with the
model), the program and memory images, and ``DIR/report.json``."""

from __future__ import annotations

import argparse
import json
from .info import MODEL_HELP


def load_config(args: argparse.Namespace, model, spec):
    """The engine: the fastest one that fits ``--board``, or the one ``--config`` gives;
    and the board to record in the report (a bundled ``--board``, else ``None``)."""
    from dynfix.errors import DynfixError
    from dynfix.hw.config import EngineConfig

    if args.board:
        from dynfix.api import engine_config, get_board
        board = get_board(args.board)
        return engine_config(model, spec, board)[0], board.bundled_name
    import yaml
    try:
        with open(args.config) as f:
            d = yaml.safe_load(f)
    except OSError as e:
        raise DynfixError(f"cannot read engine config {args.config}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise DynfixError(f"engine config {args.config} is not valid YAML: "
                          f"{str(e).splitlines()[0]}") from None
    return EngineConfig.from_dict(d or {}, where=f"engine config {args.config}"), None


def run(args: argparse.Namespace) -> int:
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.generate import write_outputs
    from dynfix.sim.simulate import write_model_files
    from dynfix.quant.load import load_model
    from dynfix.quant.qspec_io import load_qspec

    model = load_model(args.model)
    spec = load_qspec(args.quant, model)
    cfg, board = load_config(args, model, spec)
    cm = compile_model(model, spec, cfg)
    rep = write_outputs(cm, model.name, args.output, board)
    write_model_files(model, spec, args.output)
    if args.json:
        print(json.dumps(rep, indent=2, sort_keys=True))
    else:
        e, est = rep["engine"], rep["estimate"]
        print(f"{model.name}: engine k={e['k']} tn={e['tn']} tm={e['tm']} "
              f"({e['multipliers']} multipliers, {e['data_bits']}-bit data, "
              f"{e['weight_bits']}-bit weights, {e['acc_bits']}-bit accumulators)")
        for r in est["layers"]:
            print(f"  {r['name']:<12} {r['kind']:<6} {r['cycles']:>9} cycles  "
                  f"{100 * r['utilization']:5.1f} % MAC utilization")
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
