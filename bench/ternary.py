"""Ternary weights (TTQ's form, fitted without retraining) on the trained MLPerf Tiny ResNet-8 and
DS-CNN.

Writes ``bench/results/ternary.md``: each model quantized to 8 bits by ``greedy`` on
``bench/mlperf_data.py``'s calibration inputs, then with the weights of every Conv2d and
Linear layer but the first and the last ternarized (``dynfix quantize --ternary all``),
asymmetric (one integer pair ``-Wn, +Wp`` per layer) and symmetric (2-bit ``{-1, 0, 1}``
with a power-of-two scale per channel), and asymmetric in every layer (the first and the
last too). Per model and form: the weight bits stored (the ternary layers at 2 bits per
weight, plus a 4-entry codebook per asymmetric layer; the others at 8), top-1 agreement and
output SQNR of the integer model against the float model on the held-out test inputs. Then,
per layer, the response SQNR of the fixed-point weights, of TTQ's threshold with mean
scales, of the fitted asymmetric and symmetric forms, and the symmetric form before its
power-of-two rounding.

Run: ``.venv/bin/python bench/ternary.py [--models resnet8,dscnn]`` (several minutes on two
cores: one greedy search per model and form).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mlperf_data as md  # noqa: E402
from common import md_table, write_result  # noqa: E402

from dynfix.quant.adjust import tied_columns  # noqa: E402
from dynfix.quant.fidelity import fidelity, outputs  # noqa: E402
from dynfix.quant.int_model import IntModel, weight_array  # noqa: E402
from dynfix.quant.load import load_model  # noqa: E402
from dynfix.quant.search import search_model  # noqa: E402
from dynfix.quant.ternary import ternarizable  # noqa: E402

MODELS = HERE.parent / "models" / "mlperf_tiny"
LABELS = {"resnet8": "ResNet-8", "dscnn": "DS-CNN"}
CALIB = 64
#: (label, ternary layers, mode) per run; None: the 8-bit baseline.
RUNS = [("8-bit", None, "asymmetric"),
        ("asymmetric TTQ", "all", "asymmetric"),
        ("symmetric TTQ", "all", "symmetric"),
        ("asymmetric TTQ, first and last too", "every", "asymmetric")]


def stored_weights(im: IntModel, name: str) -> int:
    """A layer's weights as the engine stores them (a folded pool's runs once)."""
    w = im.weights[name]
    return w.size // tied_columns(weight_array(im.model.layer(name)))


def run(name: str, log=print) -> tuple[list, list]:
    model = load_model(str(MODELS / f"{name}.onnx"))
    cal, test = md.inputs(name, "calib", CALIB), md.inputs(name, "test")
    rows, layers = [], {}
    for label, which, mode in RUNS:
        t0 = time.perf_counter()
        names = [layer.name for layer in model.layers if ternarizable(layer)]
        tern = names if which == "every" else which
        r = search_model(model, cal, bits="8", method="greedy", ternary=tern,
                         ternary_mode=mode)
        dt = time.perf_counter() - t0
        ref, out = outputs(model, r.spec, test, r.model)
        fid = fidelity(ref, out)
        im = IntModel(r.model, r.spec)
        names = [layer.name for layer in im.model.layers if ternarizable(layer)]
        w8 = sum(stored_weights(im, n) * r.spec.layers[n].bw_w for n in names)
        done = {x.layer: x for x in r.ternary}
        bits = sum(done[n].bits_after if n in done else
                   stored_weights(im, n) * r.spec.layers[n].bw_w for n in names)
        for x in r.ternary:                 # the fit's claim, checked on the integer model
            vals = np.unique(im.weights[x.layer])
            assert len(vals) <= 3 and (mode == "asymmetric" or set(vals) <= {-1, 0, 1})
        base = rows[0][2] if rows else w8
        rows.append([LABELS[name], label, w8 if not rows else base, f"{bits / 8:,.0f}",
                     f"{base / bits:.2f}x" if rows else "1.00x", len(r.ternary),
                     f"{100 * fid.agreement:.1f} %", f"{fid.sqnr_db:.2f}", f"{dt:.0f}"])
        for x in r.ternary:
            layers.setdefault(x.layer, {})[label] = x
        log(" | ".join(map(str, rows[-1])))
    for row in rows:
        row[2] = f"{row[2] // 8:,}"
    per_layer = []
    for n, d in layers.items():
        a, s = d.get("asymmetric TTQ"), d.get("symmetric TTQ")
        e = d["asymmetric TTQ, first and last too"]
        f = a or e                          # the fixed point and TTQ on its run's input
        per_layer.append([LABELS[name], n, f"{e.weights:,}", f"{f.sqnr_fixed_db:.1f}",
                          f"{f.sqnr_ttq_db:.1f}",
                          "-" if a is None else f"{a.sqnr_cut_db:.1f}",
                          "-" if a is None else f"{a.sqnr_db:.1f} ({a.threshold:.2f}, "
                          f"{','.join(map(str, a.values))})",
                          "-" if s is None else f"{s.sqnr_unrounded_db:.1f}",
                          "-" if s is None else f"{s.sqnr_cut_db:.1f}",
                          "-" if s is None else f"{s.sqnr_db:.1f} ({s.threshold:.2f}, "
                          f"fl {s.fl_w[0]}..{s.fl_w[1]})",
                          f"{e.sqnr_db:.1f}"])
    return rows, per_layer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet8,dscnn")
    args = ap.parse_args()
    rows, per_layer = [], []
    for name in args.models.split(","):
        a, b = run(name)
        rows, per_layer = rows + a, per_layer + b
    text = ["# Ternary weights (TTQ's form) on the trained MLPerf Tiny models", "",
            "Generated by `bench/ternary.py`. Each model is quantized to 8 bits by `greedy`",
            f"on {CALIB} calibration inputs of `bench/mlperf_data.py`; then the weights of",
            "every Conv2d and Linear layer but the first and the last are ternarized",
            "(`dynfix quantize --ternary all`, quant/ternary.py), with no retraining: the",
            "threshold and the scales are fitted on each layer's response to the",
            "calibration inputs, then single weights switched between 0 and their scale",
            "while the response error falls, layers in network order, biases corrected",
            "(docs/compression.md). Asymmetric: one integer pair {-Wn, 0, +Wp} per layer at",
            "its 8-bit weight grid (with the per-channel formats' power-of-two shifts).",
            "The pair's unit per channel is the layer's 8-bit formats' or a power of two",
            "per channel (the symmetric fit's, 6 bits finer), whichever fits better.",
            "Symmetric: {-1, 0, 1} in a 2-bit format, a power-of-two scale per output",
            "channel (no multiplier needed). The last row per model also ternarizes the",
            "first and the last layers, which TTQ keeps at full precision. Weight bytes:",
            "every Conv2d and Linear layer, the ternary ones as 2 bits per weight (plus a",
            "4-entry codebook of 8-bit values per asymmetric layer), the others as their",
            "fixed point; ratio against the 8-bit model. Agreement (top-1) and SQNR: the",
            "integer model against the float model on the held-out test inputs (logits",
            "before the softmax).", "",
            *md_table(["model", "weights", "weight bytes (8-bit)", "weight bytes",
                       "ratio", "ternary layers", "test agreement",
                       "test output SQNR dB", "quantize s"], rows), "",
            "## Per layer", "",
            "Response SQNR (dB) of each layer's pre-activation on the calibration inputs,",
            "against the float layer on the float model's input, each channel's mean",
            "error removed (the bias correction removes it), on the partly-ternarized",
            "model's input of the run of its column (fixed point and TTQ: the asymmetric",
            "run's, for the first and last layers the last run's): so the fixed-point",
            "column shows how far the layer's input has drifted already. The columns: the",
            "8-bit fixed-point weights;",
            "TTQ's threshold (0.05 max|w|) with each scale the mean of the weights it",
            "replaces (a fit on the weights); the response fit, asymmetric with its",
            "threshold and pair alone (cut) and after single-weight switches (kept;",
            "threshold over max|w|, integers), symmetric with its per-channel least",
            "squares scales before rounding them to powers of two, after (cut), and after",
            "single-weight switches (kept; mean threshold, weight fl range).", "",
            *md_table(["model", "layer", "weights", "fixed point", "TTQ mean scales",
                       "asym. cut", "asymmetric", "sym. unrounded", "sym. cut",
                       "symmetric", "asymmetric, every layer"], per_layer)]
    write_result("ternary.md", text)


if __name__ == "__main__":
    main()
