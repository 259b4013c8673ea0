"""Low-rank convolutions (Zhang et al.) on the trained MLPerf Tiny ResNet-8 and DS-CNN.

Writes ``bench/results/lowrank_conv.md``: for each model and whole-model speed-up target of
the convolutions' MACs, the ranks the greedy picks from the responses' PCA energies on
``bench/mlperf_data.py``'s calibration inputs, then the convs fitted four ways at those same
ranks: plain SVD of the weights (data-blind), the linear (PCA) fit of the responses, the
nonlinear fit (through the ReLU) and the asymmetric one (also correcting the error of
earlier approximated layers), all without retraining. Measures on the held-out test inputs:
top-1 agreement with the float model and output SQNR (the logits, before the softmax); MACs
and parameters of the whole model. Then, per layer at one target, the ranks and the relative
response errors of each fit on the calibration data; and the asymmetric model at one target
quantized to 8 bits by ``greedy`` (``--quantize``).

Run: ``.venv/bin/python bench/lowrank_conv.py [--models resnet8,dscnn]
[--speedups 1.25,1.5,2,3] [--quantize 1.5]`` (a few minutes on two cores).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the fits' small matrices: one core
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mlperf_data as md  # noqa: E402
from common import md_table, write_result  # noqa: E402

from dynfix.errors import DynfixError  # noqa: E402
from dynfix.quant.fidelity import agreement, float_logits, fidelity, outputs, sqnr_db  # noqa
from dynfix.quant.load import load_model  # noqa: E402
from dynfix.quant.lowrank_conv import compress_convs  # noqa: E402
from dynfix.quant.search import search_model  # noqa: E402

MODELS = HERE.parent / "models" / "mlperf_tiny"
LABELS = {"resnet8": "ResNet-8", "dscnn": "DS-CNN"}
FITS = ("svd", "linear", "nonlinear", "asymmetric")
FIT_LABELS = {"svd": "weight SVD", "linear": "linear (PCA)", "nonlinear": "nonlinear",
              "asymmetric": "asymmetric"}


def run(name: str, speedups: list[float], detail: float, quantize: float | None, log=print
        ) -> tuple[list[list], list[list], list[list]]:
    model = load_model(str(MODELS / f"{name}.onnx"))
    cal, test = md.inputs(name, "calib"), md.inputs(name, "test")
    ref = float_logits(model, test)
    s = model.summary()
    rows = [[LABELS[name], "-", "original", "-", f"{s['total_macs']:,}",
             f"{s['total_params']:,}", "100.0 %", "inf", "-"]]
    per_layer, quant_rows = [], []
    for target in speedups:
        for fit in FITS:
            t0 = time.perf_counter()
            try:
                r = compress_convs(model, cal, speedup=target, method=fit)
            except DynfixError as e:
                rows.append([LABELS[name], f"{target:g}x", FIT_LABELS[fit], "-", "-", "-",
                             "error", str(e), "-"])
                log(f"{name} {target}x {fit}: {e}")
                break
            dt = time.perf_counter() - t0
            out = float_logits(r.model, test)
            ns = r.model.summary()
            rows.append([LABELS[name], f"{target:g}x", FIT_LABELS[fit], f"{r.speedup:.2f}x",
                         f"{ns['total_macs']:,}", f"{ns['total_params']:,}",
                         f"{100 * agreement(ref, out):.1f} %", f"{sqnr_db(ref, out):.2f}",
                         f"{dt:.1f}"])
            log(" | ".join(map(str, rows[-1])))
            if fit == "asymmetric" and target == detail:
                per_layer += [[LABELS[name], x.layer, f"{x.rank}/{x.filters}",
                               "ReLU" if x.relu else "-", f"{x.macs_before:,}",
                               f"{x.macs_after:,}", f"{100 * x.energy:.1f} %",
                               f"{x.err_svd:.3f}", f"{x.err_linear:.3f}",
                               f"{x.err_nonlinear:.3f}", f"{x.err_asymmetric:.3f}"]
                              for x in r.layers]
                per_layer += [[LABELS[name], layer, "-", "-", "-", "-", "-", why, "", "", ""]
                              for layer, why in r.skipped.items()]
            if fit == "asymmetric" and target == quantize:
                for label, m in (("original", model), (f"asymmetric {target:g}x", r.model)):
                    t0 = time.perf_counter()
                    q = search_model(m, cal, bits="8", method="greedy")
                    _, s8 = outputs(m, q.spec, test, q.model)
                    fq = fidelity(ref, s8)
                    quant_rows.append([LABELS[name], label, "8", f"{m.summary()['total_macs']:,}",
                                       f"{100 * fq.agreement:.1f} %", f"{fq.sqnr_db:.2f}",
                                       f"{time.perf_counter() - t0:.0f}"])
                    log(" | ".join(map(str, quant_rows[-1])))
    return rows, per_layer, quant_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet8,dscnn")
    ap.add_argument("--speedups", default="1.25,1.5,2,3")
    ap.add_argument("--detail", type=float, default=2.0,
                    help="the target whose per-layer fits are tabulated")
    ap.add_argument("--quantize", type=float, default=1.5,
                    help="the target whose asymmetric model is also quantized (0: none)")
    args = ap.parse_args()
    speedups = [float(v) for v in args.speedups.split(",")]
    rows, per_layer, quant_rows = [], [], []
    for name in args.models.split(","):
        a, b, c = run(name, speedups, args.detail, args.quantize or None)
        rows, per_layer, quant_rows = rows + a, per_layer + b, quant_rows + c
    text = ["# Low-rank convolutions on the trained MLPerf Tiny models", "",
            "Generated by `bench/lowrank_conv.py`. Each conv (groups = 1) becomes a k x k conv",
            "into d' channels and a 1 x 1 conv (Zhang, Zou, He, Sun, CVPR 2015 / TPAMI 2016).",
            "The ranks come from the greedy on the responses' PCA energies for the target",
            "speed-up of the convolutions' MACs (the same ranks for every fit); the factors",
            "are fitted on 64 calibration inputs of `bench/mlperf_data.py`, without retraining.",
            "Agreement (top-1) and SQNR: the float compressed model against the float model",
            "on the 200 held-out test inputs (logits before the softmax). Depthwise convs",
            "(DS-CNN) are left as they are.", "",
            *md_table(["model", "target", "fit", "convs' speed-up", "MACs", "params",
                       "test agreement", "test output SQNR dB", "fit s"], rows), "",
            f"## Per layer at {args.detail:g}x (asymmetric model)", "",
            "Relative error of each fit's responses on the calibration inputs (after the ReLU",
            "where the conv feeds one), all with the input of the approximated network,",
            "against the original network's responses, relative to their spread; energy:",
            "the response variance the rank keeps.", "",
            *md_table(["model", "layer", "rank", "then", "MACs", "MACs after", "energy",
                       "weight SVD", "linear", "nonlinear", "asymmetric"], per_layer)]
    if quant_rows:
        text += ["", "## With 8-bit dynamic fixed point (greedy)", "",
                 "The float model's logits against the quantized model's on the test inputs.",
                 "", *md_table(["model", "model variant", "bits", "MACs", "test agreement",
                                "test output SQNR dB", "quantize s"], quant_rows)]
    write_result("lowrank_conv.md", text)


if __name__ == "__main__":
    main()
