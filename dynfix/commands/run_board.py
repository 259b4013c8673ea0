"""``dynfix run-board --port /dev/ttyUSB1 --quant Q.yaml --data digits [--images N]``: send
images to a board running the dynfix bitstream, read back logits, class and cycle count, and
compare them bit for bit with the integer model."""

from __future__ import annotations

import argparse
import json
import time


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from dynfix.boards.host import BoardClient, open_port
    from dynfix.errors import DynfixError
    from dynfix.hw.compiler import plan_groups
    from dynfix.quant.datasets import load_data
    from dynfix.quant.int_model import IntModel
    from dynfix.quant.load import load_model
    from dynfix.quant.qspec_io import load_qspec

    if args.images is not None and args.images < 1:
        raise DynfixError("--images must be at least 1")
    model = load_model(args.model)
    spec = load_qspec(args.quant, model)
    x, y = load_data(args.data, "test", need_labels=False)
    if args.images is not None:
        x = x[:args.images]
        y = None if y is None else y[:args.images]
    im = IntModel(model, spec)
    _, out_name = plan_groups(model)
    port = open_port(args.port, args.baud, args.timeout)
    rows, t0 = [], time.monotonic()
    with port:
        client = BoardClient(port)
        info = client.connect()
        if info.n_in != int(np.prod(x.shape[1:])):
            raise DynfixError(f"the board's engine takes {info.n_in} inputs, the data has "
                              f"{int(np.prod(x.shape[1:]))} per image: another model?")
        for i in range(len(x)):
            xq = im.quantize_input(x[i:i + 1])
            ref = np.asarray(im.forward(xq)[out_name]).reshape(-1)
            res = client.infer(xq[0])
            rows.append({"index": i, "predicted": res.predicted, "cycles": res.cycles,
                         "label": None if y is None else int(y[i]),
                         "bit_exact": bool(np.array_equal(res.logits, ref)),
                         "logits": res.logits.tolist()})
    seconds = time.monotonic() - t0
    exact = sum(r["bit_exact"] for r in rows)
    summary = {"images": len(rows), "bit_exact": exact, "seconds": round(seconds, 2),
               "cycles": rows[0]["cycles"] if rows else 0}
    if y is not None:
        summary["accuracy"] = sum(r["predicted"] == r["label"] for r in rows) / len(rows)
    if args.json:
        print(json.dumps({"summary": summary, "images": rows}, indent=2))
    else:
        for r in rows[:10]:
            print(f"  image {r['index']}: class {r['predicted']} (label {r['label']}), "
                  f"{r['cycles']} cycles, {'bit-exact' if r['bit_exact'] else 'MISMATCH'}")
        acc = f", accuracy {summary['accuracy']:.1%}" if "accuracy" in summary else ""
        print(f"{len(rows)} images in {seconds:.1f} s: {exact} bit-exact with the integer "
              f"model{acc}, {summary['cycles']} engine cycles per image")
    return 0 if exact == len(rows) else 1


def register(subparsers) -> None:
    p = subparsers.add_parser("run-board", help="run images on a board over its serial port",
                              description=__doc__)
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB1")
    p.add_argument("--model", default="digits", help="the model the bitstream was built for")
    p.add_argument("--quant", required=True, metavar="Q.yaml", help="its quantization")
    p.add_argument("--data", default="digits", help="digits, X.npy or D.npz")
    p.add_argument("--images", type=int, help="how many images (default: all)")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a reply")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
