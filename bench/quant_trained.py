"""The quantizer on the MLPerf Tiny reference models with their trained weights.

Writes ``bench/results/quant_trained.md``: for each model of ``models/mlperf_tiny`` and each
bit width, dynfix ``greedy-paper`` and ``greedy`` calibrated on ``bench/mlperf_data.py``'s
calibration inputs and scored on its held-out test inputs (drawn from other photos, other
voices, other machines), against the official int8 TFLite model and ONNX Runtime's static
int8 quantization (``bench/quant_table.py``'s rows: QDQ, MinMax and Percentile calibration
with per-channel weights, MinMax per tensor, on the same calibration inputs) on the same
test inputs. Measures: top-1 agreement with the float model (classifiers), output SQNR
against the float model (dynfix and ONNX Runtime: the logits; TFLite: its softmax output
for classifiers, so there only the autoencoder's SQNR compares), search time. A run that
fails shows its error.

Run: ``.venv/bin/python bench/quant_trained.py [--models vww,resnet8,dscnn,ad]
[--bits 8,16]`` (about 20 minutes on two cores, most of it VWW's greedy).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tools"))
import mlperf_data as md  # noqa: E402
from common import md_table, write_result  # noqa: E402
from mlperf_trained import tflite_outputs  # noqa: E402
from quant_table import Case, run_ort  # noqa: E402

from dynfix.errors import DynfixError  # noqa: E402
from dynfix.quant.fidelity import fidelity, outputs  # noqa: E402
from dynfix.quant.float_model import predict  # noqa: E402
from dynfix.quant.load import load_model  # noqa: E402
from dynfix.quant.search import search_model  # noqa: E402

MODELS = HERE.parent / "models" / "mlperf_tiny"
INT8 = {"vww": "vww_96_int8", "resnet8": "pretrainedResnet_quant", "dscnn": "kws_ref_model",
        "ad": "ad01_int8"}
#: ONNX Runtime rows: (label, calibration method, per-channel weights).
ORT = [("ORT int8 MinMax per-channel", "MinMax", True),
       ("ORT int8 Percentile per-channel", "Percentile", True),
       ("ORT int8 MinMax per-tensor", "MinMax", False)]
LABELS = {"vww": "VWW MobileNetV1-0.25", "resnet8": "ResNet-8", "dscnn": "DS-CNN",
          "ad": "AD autoencoder"}


def rows_for(name: str, widths: list[str], log=print) -> list[list]:
    model = load_model(str(MODELS / f"{name}.onnx"))
    cal, test = md.inputs(name, "calib"), md.inputs(name, "test")
    classes = name != "ad"
    ref = predict(model, test).reshape(len(test), -1).astype(np.float64)
    t8 = fidelity(ref, tflite_outputs(MODELS / "int8" / f"{INT8[name]}.tflite", test)
                  .reshape(len(test), -1))
    size = f"{len(cal)} / {len(test)}"
    rows = [[LABELS[name], size, "int8 TFLite (official)", "-",
             f"{100 * t8.agreement:.1f} %" if classes else "-",
             f"{t8.sqnr_db:.2f}" + (" (softmax)" if classes else ""), "-"]]
    log(f"{name}: int8 TFLite {t8.text()}")
    case = Case(name, LABELS[name], model, cal, test)
    for label, calibrate, per_channel in ORT:
        with tempfile.TemporaryDirectory() as tmp:
            o = run_ort(case, calibrate, per_channel, Path(tmp))
        rows.append([LABELS[name], size, label, "8",
                     f"{100 * o['agreement']:.1f} %" if classes else "-",
                     f"{o['sqnr']:.2f}", "-"])
        log(f"{name}: {label} agreement {100 * o['agreement']:.2f} %, SQNR {o['sqnr']:.2f} dB")
    for bits in widths:
        for method in ("greedy-paper", "greedy"):
            t0 = time.perf_counter()
            try:
                r = search_model(model, cal, bits=bits, method=method)
            except DynfixError as e:
                rows.append([LABELS[name], size, method, bits, "error", str(e), "-"])
                log(f"{name} {bits} {method}: error {e}")
                continue
            dt = time.perf_counter() - t0
            fc = fidelity(*outputs(model, r.spec, cal, r.model))
            ft = fidelity(*outputs(model, r.spec, test, r.model))
            rows.append([LABELS[name], size, method, bits,
                         f"{100 * ft.agreement:.1f} %" if classes else "-",
                         f"{ft.sqnr_db:.2f} (calib {fc.sqnr_db:.2f})", f"{dt:.0f}"])
            log(f"{name} {bits} {method}: calib {fc.text()}; test {ft.text()}; {dt:.0f} s")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="vww,resnet8,dscnn,ad")
    ap.add_argument("--bits", default="8,16")
    args = ap.parse_args()
    widths = args.bits.split(",")
    rows = [row for name in args.models.split(",") for row in rows_for(name, widths)]
    head = ["model", "calib / test inputs", "quantizer", "bits", "test agreement",
            "test output SQNR dB", "search s"]
    text = ["# Quantizer on the trained MLPerf Tiny models", "",
            "Generated by `bench/quant_trained.py`: calibration and held-out test inputs from",
            "`bench/mlperf_data.py` (different photos, voices and machines in the two splits),",
            "the official int8 TFLite files and ONNX Runtime's static int8 as baselines.",
            "Agreement: top-1 with the float model (classifiers).",
            "dynfix's and ONNX Runtime's SQNR are on the logits; TFLite's on its softmax",
            "output for the classifiers (not comparable), on the reconstruction for AD.", "",
            *md_table(head, rows)]
    write_result("quant_trained.md", text)


if __name__ == "__main__":
    main()
