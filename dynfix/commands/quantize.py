"""``dynfix quantize MODEL --calib DATA --bits SPEC --output Q.yaml``: pick every layer's
fixed-point format on calibration data (greedy dynamic precision by default).

The greedy method's additions beyond the paper (docs/quantization.md) each have an option;
``--method greedy`` starts from its defaults (``search.GREEDY``), ``--method greedy-paper``
from none, and the options given change those. When bias correction, adaptive rounding,
weight sharing (``--share``) or ternary weights (``--ternary``) chose other weights/biases
than the model's own rounded to nearest, they are written to ``Q.params.npz`` beside
``Q.yaml`` (which names it); every command that takes ``--quant`` reads them."""

from __future__ import annotations

import argparse
import json
import sys

from dynfix.errors import DynfixError
from dynfix.quant.qspec import AddFormat, QuantSpec
from dynfix.quant.qspec_io import finite_or_none, spec_to_dict
from dynfix.quant.qspec import OPTION_CHOICES
from dynfix.quant.search import GREEDY, QUANTIZE_METHODS
from dynfix.quant.weight_sharing import ShareReport, header as share_header
from dynfix.quant.weight_sharing import summary as share_summary
from dynfix.quant.ternary import MODES as TERNARY_MODES, TernaryReport
from dynfix.quant.ternary import header as ternary_header, summary as ternary_summary
from . import BITS_HELP, MODEL_HELP

#: The option flags: (flag, QuantOptions field, choices or None for on/off, help).
OPTION_FLAGS = [
    ("--equalize", "equalize", None,
     "also try the search on cross-layer-equalized weights (the same float function); "
     "keep whichever scores better"),
    ("--criterion", "criterion", OPTION_CHOICES["criterion"],
     "error the weight and data phases minimize: l1 (the paper's) or mse"),
    ("--start", "start", OPTION_CHOICES["start"],
     "data-phase window: around the overflow-free fl of max|v| (the paper's), or also "
     "around that of the 99.99th percentile"),
    ("--bias-correction", "bias_correction", None,
     "shift each bias by the mean pre-activation error of its quantized layer"),
    ("--rounding", "rounding", OPTION_CHOICES["rounding"],
     "weights to nearest (the paper's) or adaptive (floor or ceil, by output error)"),
    ("--refine", "refine", None,
     "coordinate descent of the fl choices on the network output (calibration data)"),
    ("--unsigned", "unsigned", None,
     "store maps that cannot be negative (after a ReLU / ReLU6, a non-negative input) "
     "unsigned: one more bit of resolution for free on the engine"),
    ("--asymmetric", "asymmetric", None,
     "give the other maps an offset (zero point) that centres their calibration range"),
    ("--per-channel", "per_channel", None,
     "a weight fl per output channel (the engine shifts each channel by its own amount)"),
    ("--fill", "fill", None,
     "also try the search on a model whose maps are rescaled (exactly) so their calibrated "
     "range fills a power-of-two format; the host scales the input and output"),
    ("--headroom", "headroom", None,
     "map formats with headroom past the calibration maxima: as coarse as a held-out half "
     "of the calibration inputs asks, and maps wider than 12 bits keep up to 3 bits over "
     "the maximum (held-out inputs reach beyond the calibration set's)"),
    ("--unclipped-weights", "unclipped_weights", None,
     "weight and bias formats never clip: the window ends at the overflow-free fl (the "
     "paper's reaches 3 finer; --refine may still move a layer's fl_w finer on the output)"),
    ("--objective", "objective", OPTION_CHOICES["objective"],
     "what --refine and the choice against greedy-paper maximize: auto (agreement then "
     "SQNR for class outputs, SQNR otherwise), agreement, sqnr"),
]

COLUMNS = ("layer", "bw_w", "fl_w", "bw_b", "fl_b", "bw_in", "fl_in", "bw_x", "fl_out",
           "acc", "SQNR dB", "saturated")


def table(spec: QuantSpec) -> str:
    """The per-layer formats as a fixed-width text table."""
    width = max([len(n) for n in spec.layers] + [5])
    head = f"{COLUMNS[0]:<{width}} " + " ".join(f"{c:>6}" for c in COLUMNS[1:10])
    lines = [head + f" {COLUMNS[10]:>8} {COLUMNS[11]:>9}"]
    for f in spec.layers.values():
        if isinstance(f, AddFormat):    # no weights; both inputs' formats; the sum's width
            nums = ("-", "-", "-", "-", ",".join(map(str, f.bw_in)),
                    ",".join(map(str, f.fl_in)), f.bw_x, f.fl_out, f.sum_bits)
        else:   # per-channel weight formats: the range of fl_w; an unsigned map: bw_x "8u"
            fl_w = f"{f.fl_w}..{f.fl_w + max(f.ch_fl)}" if f.ch_fl else f.fl_w
            nums = (f.bw_w, fl_w, f.bw_b, f.fl_b, f.bw_in, f.fl_in,
                    f"{f.bw_x}{'u' if f.zp_out else ''}", f.fl_out, f.acc_bits)
        lines.append(f"{f.name:<{width}} " + " ".join(f"{v:>6}" for v in nums)
                     + (f" {f.sqnr_db:>8.1f} {f.saturated:>9}" if f.sqnr_db is not None
                        else f" {'-':>8} {'-':>9}"))     # qonnx: no calibration statistics
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    changes = {}
    for _, field, choices, _ in OPTION_FLAGS:
        v = getattr(args, field)
        if v is not None:
            changes[field] = (v == "on") if choices is None else v
    if args.calib is None and args.method != "qonnx":
        raise DynfixError(f"method {args.method} searches the formats on calibration inputs: "
                          f"pass --calib DATA")
    if args.ternary_mode is not None and args.ternary is None:
        raise DynfixError("--ternary-mode chooses the form of --ternary; pass --ternary "
                          "LAYER,... or all too")
    q = api.quantize(args.model, args.calib, args.bits, args.method, args.overrides,
                     args.output, progress, changes or None, args.share, args.ternary,
                     args.ternary_mode or "asymmetric", args.share_zero != "off")
    spec = q.spec
    wrote = ", ".join(str(p) for p in q.files)
    if q.calib_inputs:
        progress(f"search took {q.seconds:.2f} s on {q.calib_inputs} calibration inputs; "
                 f"wrote {wrote}")
    else:
        progress(f"formats read from the model's Quant nodes, no search; wrote {wrote}")
    if args.json:
        d = spec_to_dict(spec)
        for row in d["layers"]:
            row["sqnr_db"] = finite_or_none(row["sqnr_db"])
        d.update(calib_inputs=q.calib_inputs, search_seconds=round(q.seconds, 3),
                 output=str(args.output))
        if q.sharing:
            d["sharing"] = [sharing_row(r) for r in q.sharing]
        if q.ternary:
            d["ternary"] = [ternary_row(r) for r in q.ternary]
        print(json.dumps(d, indent=2))
    else:
        opts = "" if spec.options is None else " (" + ", ".join(
            f"{k} {v}" for k, v in spec.options.to_dict().items()) + ")"
        print(f"model {spec.model}: method {spec.method}{opts}, bits {spec.bits}, input "
              f"{spec.input_bw} bits{' unsigned' if spec.input_zp else ''} fl {spec.input_fl}"
              + "".join(f", {k.replace('_', ' ')} {getattr(spec, k):.6g}"
                        for k in ("input_scale", "output_scale") if getattr(spec, k) != 1))
        print(table(spec))
        if q.sharing:
            width = max([len(r.layer) for r in q.sharing] + [5])
            print(f"\n{share_header(width)}")
            print("\n".join(r.line(width) for r in q.sharing))
            print(share_summary(q.sharing))
        if q.ternary:
            width = max([len(r.layer) for r in q.ternary] + [5])
            print(f"\n{ternary_header(width)}")
            print("\n".join(r.line(width) for r in q.ternary))
            print(ternary_summary(q.ternary))
    return 0


def sharing_row(r: ShareReport) -> dict:
    """One shared layer's report as plain numbers (``--json``)."""
    return {"layer": r.layer, "bits": r.bits, "values": r.distinct, "weights": r.weights,
            "bits_weights": r.bits_before, "bits_indices": r.bits_after,
            "bits_huffman": r.bits_huffman,
            **{k: finite_or_none(round(getattr(r, k), 2))
               for k in ("sqnr_fixed_db", "sqnr_kmeans_db", "sqnr_db")}}


def ternary_row(r: TernaryReport) -> dict:
    """One ternarized layer's report as plain numbers (``--json``)."""
    return {"layer": r.layer, "mode": r.mode, "values": list(r.values),
            "fl_w": list(r.fl_w), "threshold": round(r.threshold, 4),
            "zeros": round(r.zeros, 4), "weights": r.weights,
            "bits_weights": r.bits_before, "bits_ternary": r.bits_after,
            **{k: finite_or_none(getattr(r, k) and round(getattr(r, k), 2))
               for k in ("sqnr_fixed_db", "sqnr_ttq_db", "sqnr_unrounded_db", "sqnr_cut_db",
                         "sqnr_db")}}


def register(subparsers) -> None:
    p = subparsers.add_parser("quantize", help="choose per-layer fixed-point formats (Q.yaml)",
                              description=__doc__)
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--calib",
                   help="calibration inputs: digits (its calib split), X.npy or D.npz "
                        "(required, except for --method qonnx when the Quant nodes give "
                        "every format)")
    p.add_argument("--bits", default="8", help=BITS_HELP)
    p.add_argument("--method", choices=QUANTIZE_METHODS, default="greedy",
                   help="greedy: dynamic fl by error search plus the additions below "
                        "(default); greedy-paper: the paper's search alone; range: "
                        "Ristretto's max-abs rule; static: one fl for the whole network; qonnx: "
                        "the formats of a QONNX model's Quant nodes (docs/quantization.md)")
    for flag, field, choices, text in OPTION_FLAGS:
        default = getattr(GREEDY, field)
        if choices is None:
            p.add_argument(flag, dest=field, choices=("on", "off"),
                           help=f"{text} (greedy default: {'on' if default else 'off'})")
        else:
            p.add_argument(flag, dest=field, choices=choices,
                           help=f"{text} (greedy default: {default})")
    p.add_argument("--share", metavar="BITS",
                   help="weight sharing once the formats are chosen: every Conv2d and Linear "
                        "layer's weights become one of 2**BITS values of its weight format "
                        "(k-means, refined on the layer's response to the calibration "
                        "inputs); BITS (2..8) for all such layers or LAYER=BITS,... "
                        "(docs/compression.md)")
    p.add_argument("--share-zero", choices=("on", "off"),
                   help="on (default): one entry of every codebook is 0, which the engine's "
                        "zero-padded weight words need to store --share BITS-bit indices; "
                        "off: all 2**BITS entries free (closer weights; the engine then "
                        "takes an index bit more, or 8-bit weights, where words are padded)")
    p.add_argument("--ternary", metavar="LAYER,...|all",
                   help="ternary weights once the formats are chosen (TTQ without "
                        "retraining): the named Conv2d and Linear layers' weights become "
                        "{-Wn, 0, +Wp}, threshold and scales fitted on the layer's response "
                        "to the calibration inputs; all: every such layer but the first "
                        "and the last (name them to add them); not with --share "
                        "(docs/compression.md)")
    p.add_argument("--ternary-mode", choices=TERNARY_MODES,
                   help="asymmetric: one pair of integer scales per layer on its weight "
                        "grid (default); symmetric: Wp = Wn, a power of two per output "
                        "channel, so the weights are 2-bit {-1, 0, 1}")
    p.add_argument("--overrides", metavar="F.yaml",
                   help="per-layer widths: layer name -> {bw_w, bw_x, bw_b}")
    p.add_argument("--output", "-o", required=True, metavar="Q.yaml",
                   help="where to write the quantization spec")
    p.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    p.set_defaults(func=run)
