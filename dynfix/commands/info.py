"""``dynfix info MODEL``: per-layer name, op, output shape, parameters and MACs, with totals."""

from __future__ import annotations

import argparse
import json

from . import MODEL_HELP


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a model's layers, shapes, parameters and MACs",
                       description="Load MODEL and print one row per layer (name, op, output "
                                   "shape without the batch, parameters, multiply-accumulates "
                                   "per image) and the totals.")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: model, input_name, input_shape (as the "
                        "layers take it), input_layout and data_shape (as the data holds "
                        "it), input_affine (null, or the per-channel scale and shift the "
                        "host applies to the input), chain (false for a graph), layers (each "
                        "with its inputs), total_params, total_macs")
    p.set_defaults(func=run)


def format_table(summary: dict) -> str:
    """The summary as an aligned text table."""
    head = ("name", "op", "output", "params", "MACs")
    rows = [(r["name"], r["op"], "x".join(map(str, r["output_shape"])), f"{r['params']:,}",
             f"{r['macs']:,}") for r in summary["layers"]]
    rows.append(("total", "", "", f"{summary['total_params']:,}",
                 f"{summary['total_macs']:,}"))
    right = (False, False, False, True, True)
    if not summary["chain"]:                # a graph: show what each layer reads
        head += ("inputs",)
        reads = [", ".join(r["inputs"]) for r in summary["layers"]] + [""]
        rows = [r + (t,) for r, t in zip(rows, reads)]
        right += (False,)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]

    def line(r):
        return "  ".join(c.rjust(w) if rj else c.ljust(w)
                         for c, w, rj in zip(r, widths, right)).rstrip()

    shape = "x".join(map(str, summary["data_shape"]))
    layout = summary.get("input_layout", "NCHW")
    if layout != "NCHW":          # the data's own layout, transposed / reshaped on the way in
        inner = "x".join(map(str, summary["input_shape"]))
        shape += f" ({layout}; the layers take {inner}, channels first)"
    elif len(summary["data_shape"]) == 3:
        shape += " (NCHW)"
    if summary.get("input_affine"):   # a BatchNorm / Mul+Add of the input, done by the host
        shape += (f", normalized on the host (per-channel scale and shift, "
                  f"{len(summary['input_affine']['scale'])} channels)")
    out = [f"model {summary['model']}: input {shape}, {len(summary['layers'])} layers",
           line(head), line(["-" * w for w in widths])]
    out += [line(r) for r in rows[:-1]]
    out += [line(["-" * w for w in widths]), line(rows[-1])]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands
    summary = api.load_model(args.model).summary()
    print(json.dumps(summary) if args.json else format_table(summary))
    return 0
