"""Quantizer fidelity: dynfix's search and each of its additions against ONNX Runtime int8.

Writes ``bench/results/quant_table.md`` (and ``quant_fidelity.png``, ``quant_accuracy.png``,
``quant_sqnr.png``):

1. **Fidelity at 8 bits** on six models: the bundled digits model (trained, labelled), the
   four MLPerf Tiny reference architectures of ``bench/mlperf_tiny.py`` (seeded random
   weights, random inputs: agreement and SQNR only) and an MLPerf Tiny AD-shaped
   autoencoder trained here by ``tools/train_autoencoder.py`` (synthetic machine-sound
   frames, about 15 s). For each: dynfix ``greedy-paper``, each addition of
   ``QuantOptions`` on its own, the default ``greedy``, and ONNX Runtime's
   ``quantize_static`` (QDQ, int8 weights symmetric, int8 activations asymmetric with float
   scales; MinMax, Entropy and Percentile calibration per output channel, MinMax per tensor),
   all on the same calibration and test inputs. Measures on the test inputs (logits: a
   trailing Softmax is left out): top-1 agreement with the float model, top-1 accuracy
   (digits), output SQNR against the float model, weight memory (bytes), hardware cost.
2. **Anomaly detection** with the trained autoencoder: AUC of the anomaly score (MSE between
   a frame and its reconstruction) and its correlation with the float model's score.
3. **Bit widths on digits**: greedy-paper, greedy, range and static at 16/8/6/4 and 8/4
   bits; ONNX Runtime; an SVD-compressed model; the search time.

Run: ``.venv/bin/python bench/quant_table.py`` (about 15 minutes on two cores alone, 25
beside other jobs; most of it the refinement on the convolutional networks).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tools"))
import mlperf_tiny as mt  # noqa: E402
import train_autoencoder as tae  # noqa: E402
from common import md_table, pyplot, save_fig, write_result  # noqa: E402

from dynfix.quant.datasets import load_digits  # noqa: E402
from dynfix.quant.fidelity import (agreement, output_kind, output_name, outputs,  # noqa: E402
                                   sqnr_db, top1)
from dynfix.quant.float_model import predict  # noqa: E402
from dynfix.quant.int_model import IntModel, bias_array, is_compute, weight_array  # noqa: E402
from dynfix.quant.ir import Model, Softmax  # noqa: E402
from dynfix.quant.load import load_model  # noqa: E402
from dynfix.quant.onnx import save_onnx  # noqa: E402
from dynfix.quant.qspec import QuantSpec  # noqa: E402
from dynfix.quant.search import GREEDY, method_options, search_model  # noqa: E402
from dynfix.quant.svd import compress  # noqa: E402

WIDTHS = ("16", "8", "6", "4", "8/4")
SWEEP = ("greedy-paper", "greedy", "range", "static")
SVD_RANK = 8
#: dynfix rows of the fidelity table: (label, method, options changed from the method's).
DYNFIX = [("greedy-paper", "greedy-paper", {}),
          ("+ criterion mse", "greedy-paper", {"criterion": "mse"}),
          ("+ start percentile", "greedy-paper", {"start": "percentile"}),
          ("+ bias correction", "greedy-paper", {"bias_correction": True}),
          ("+ adaptive rounding", "greedy-paper", {"rounding": "adaptive"}),
          ("+ refine", "greedy-paper", {"refine": True}),
          ("+ equalize", "greedy-paper", {"equalize": True}),
          ("+ unsigned maps", "greedy-paper", {"unsigned": True}),
          ("+ asymmetric maps", "greedy-paper", {"asymmetric": True}),
          ("+ per-channel weights", "greedy-paper", {"per_channel": True}),
          ("+ range fill", "greedy-paper", {"fill": True}),
          ("greedy without range fill", "greedy", {"fill": False}),
          ("greedy without map offsets and per-channel weights", "greedy",
           {"unsigned": False, "asymmetric": False, "per_channel": False}),
          ("**greedy** (default)", "greedy", {})]
DEFAULT = "**greedy** (default)"
#: Rows whose formats need engine hardware beyond the paper's (what it is, per layer).
HARDWARE = {"unsigned": "map offsets", "asymmetric": "map offsets",
            "per_channel": "shift per channel"}
#: ONNX Runtime rows: (label, calibration method, per-channel weights).
ORT = [("ORT MinMax", "MinMax", True), ("ORT Entropy", "Entropy", True),
       ("ORT Percentile", "Percentile", True), ("ORT MinMax per-tensor", "MinMax", False)]
#: MLPerf Tiny random-weight models: calibration and test inputs (sample_inputs seeds 1, 2).
RANDOM = {"resnet8": (128, 256), "dscnn": (128, 256), "mobilenet_v1_025": (64, 128),
          "autoencoder": (256, 512)}


@dataclass
class Case:
    """A model with its calibration and test inputs (labels: digits; anomaly flags: AE)."""

    key: str
    label: str
    model: Model
    calib: np.ndarray
    test: np.ndarray
    labels: np.ndarray | None = None
    anomaly: np.ndarray | None = None
    rows: dict = field(default_factory=dict)


def cases(tmp: Path) -> list[Case]:
    xc, _ = load_digits("calib")
    xt, yt = load_digits("test")
    out = [Case("digits", "digits (trained)", load_model("digits"), xc, xt, labels=yt)]
    for name, (nc, nt) in RANDOM.items():
        p = mt.published(name)
        out.append(Case(name, f"{p['model']} ({p['task']}, random)",
                        load_model(str(mt.build(name, tmp))),
                        mt.sample_inputs(name, nc, 1), mt.sample_inputs(name, nt, 2)))
    with contextlib.redirect_stdout(io.StringIO()):
        onnx_path, data_path = tae.build(tmp / "ad")
    with np.load(data_path) as d:
        out.append(Case("ad", "AD autoencoder (trained)", load_model(str(onnx_path)),
                        d["x_calib"], d["x"], anomaly=d["y"]))
    return out


def fixed_bytes(model: Model, spec: QuantSpec) -> int:
    """Weight memory at the spec's widths: weights at bw_w bits, biases at bw_b bits."""
    bits = sum(weight_array(l).size * spec.layers[l.name].bw_w
               + bias_array(l).size * spec.layers[l.name].bw_b
               for l in model.layers if is_compute(l))
    return bits // 8


def float_bytes(model: Model) -> int:
    return 4 * sum(weight_array(l).size + bias_array(l).size
                   for l in model.layers if is_compute(l))


def measures(case: Case, f: np.ndarray, q: np.ndarray) -> dict:
    """Agreement, SQNR (and accuracy, AD scores) of outputs ``q`` against float ``f``."""
    r = {"agreement": agreement(f, q), "sqnr": sqnr_db(f, q), "out": q}
    if case.labels is not None:
        r["accuracy"] = float(np.mean(top1(q) == case.labels))
    return r


def run_dynfix(case: Case, method: str, changes: dict) -> dict:
    t0 = time.perf_counter()
    options = method_options(method, changes)
    r = search_model(case.model, case.calib, "8", method, options=options)
    dt = time.perf_counter() - t0
    f, q = outputs(case.model, r.spec, case.test, r.model)
    row = measures(case, f, q)
    used = list(dict.fromkeys(what for key, what in HARDWARE.items()
                              if getattr(options, key)))
    row.update(bytes=fixed_bytes(case.model, r.spec), seconds=dt, spec=r.spec,
               hw=", ".join(used) or "0 / 0", fallback=r.fell_back)
    return row


def logits_model(model: Model) -> Model:
    """``model`` without a trailing Softmax (what both quantizers' SQNR is measured on)."""
    if isinstance(model.layers[-1], Softmax):
        return Model(model.name, model.input_name, model.input_shape, model.layers[:-1])
    return model


def run_ort(case: Case, calibrate: str, per_channel: bool, tmp: Path) -> dict:
    """ONNX Runtime static int8 (QDQ) of the folded float model (the graph dynfix
    quantizes, written by dynfix) on the same calibration inputs."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                          QuantFormat, QuantType, quantize_static)

    model = logits_model(case.model)
    src, dst = tmp / f"{case.key}.onnx", tmp / f"{case.key}.q.onnx"
    save_onnx(model, src)
    name = model.input_name
    logging.getLogger().setLevel(logging.ERROR)  # its pre-processing advice, on every run

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{name: case.calib}])

        def get_next(self):
            return next(self.items, None)

    with contextlib.redirect_stdout(io.StringIO()):      # the histogram calibrators print
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        per_channel=per_channel,
                        calibrate_method=getattr(CalibrationMethod, calibrate))
    sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    q = sess.run(None, {name: case.test})[0].reshape(len(case.test), -1).astype(np.float64)
    f = predict(model, case.test).reshape(len(case.test), -1).astype(np.float64)
    qm = onnx.load(str(dst))
    nbytes = sum(int(np.prod(t.dims)) * (1 if t.data_type in (2, 3) else 4)
                 for t in qm.graph.initializer if len(t.dims) > 0)
    row = measures(case, f, q)
    row.update(bytes=nbytes, seconds=None, hw="n/a (float scales)")
    return row


def anomaly_rows(case: Case) -> list[list]:
    """AUC and score correlation with float of every configuration on the AD test set."""
    x, y = case.test, case.anomaly
    fs = tae.anomaly_scores(x, predict(case.model, x).astype(np.float64))
    rows = [["float32", f"{tae.auc(fs, y):.4f}", "1.0000", "-"]]
    for label, r in case.rows.items():
        s = tae.anomaly_scores(x, r["out"])
        rows.append([label, f"{tae.auc(s, y):.4f}", f"{np.corrcoef(s, fs)[0, 1]:.4f}",
                     f"{r['sqnr']:.2f}"])
    return rows


def output_ceiling(case: Case) -> tuple[float, float]:
    """The greedy output's step (in the float model's units: ``2**-fl / output_scale``) and
    the SQNR of the float output merely rounded to that 8-bit format: no choice of the
    layers before can do better with it."""
    spec = case.rows[DEFAULT]["spec"]
    fmt, c = spec.layers[output_name(case.model)], spec.output_scale
    f = predict(case.model, case.test).astype(np.float64)
    from dynfix.quant import fixed
    q = fixed.dequantize(fixed.quantize(f * c, 8, fmt.fl_out, fmt.zp_out), fmt.fl_out,
                         fmt.zp_out) / c
    return 2.0 ** -fmt.fl_out / c, sqnr_db(f, q)


def digits_sweep() -> dict:
    """Accuracy on digits at each width and method, ORT, SVD, search time (section 3)."""
    model = load_model("digits")
    calib, _ = load_digits("calib")
    xt, yt = load_digits("test")
    fpred = predict(model, xt).argmax(1)
    res = {"float": 100 * float(np.mean(fpred == yt)), "float_kib": float_bytes(model) / 1024,
           "rows": {}, "sqnr": {}}
    for bits in WIDTHS:
        for method in SWEEP:
            r = search_model(model, calib, bits, method)
            pred = IntModel(r.model, r.spec).logits(xt).argmax(1)
            res["rows"][(bits, method)] = (100 * float(np.mean(pred == yt)),
                                           100 * float(np.mean(pred == fpred)),
                                           fixed_bytes(model, r.spec) / 1024)
            if method == "greedy":
                res["sqnr"][bits] = {n: f.sqnr_db for n, f in r.spec.layers.items()}
    small, [rep] = compress(model, {"fc": SVD_RANK})
    res["svd"] = {"rank": SVD_RANK, "float": 100 * float(np.mean(predict(small, xt).argmax(1)
                                                                  == yt)),
                  "float_kib": float_bytes(small) / 1024,
                  "params": (rep.params_before, rep.params_after)}
    for bits in ("16", "8"):
        r = search_model(small, calib, bits)
        res["svd"][bits] = (100 * float(np.mean(IntModel(r.model, r.spec).logits(xt)
                                                .argmax(1) == yt)),
                            fixed_bytes(small, r.spec) / 1024)
    big, _ = load_digits("train")
    res["times"] = {}
    for method in ("greedy-paper", "greedy"):
        t0 = time.perf_counter()
        search_model(model, big[:500], "8", method)
        res["times"][method] = time.perf_counter() - t0
    return res


def run_all(log=print) -> dict:
    res = {"cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for case in cases(tmp):
            log(f"{case.key}: {len(case.calib)} calibration, {len(case.test)} test inputs")
            for label, method, changes in DYNFIX:
                case.rows[label] = run_dynfix(case, method, changes)
                log(f"  {label}: {case.rows[label]['sqnr']:.2f} dB, "
                    f"{case.rows[label]['seconds']:.1f} s")
            for label, calibrate, per_channel in ORT:
                case.rows[label] = run_ort(case, calibrate, per_channel, tmp)
            res["cases"].append(case)
    res["digits"] = digits_sweep()
    return res


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def is_classes(case: Case) -> bool:
    return output_kind(case.model) == "classes"


def best_ort(case: Case) -> tuple[float, float]:
    """The best per-channel ORT agreement and SQNR (each over the calibration methods)."""
    ort = [r for k, r in case.rows.items() if k.startswith("ORT") and "tensor" not in k]
    return max(r["agreement"] for r in ort), max(r["sqnr"] for r in ort)


def margins(case: Case) -> str:
    """What the float model's class outputs look like on the test inputs."""
    f = predict(logits_model(case.model), case.test).reshape(len(case.test), -1)
    top = np.sort(f, axis=1)
    classes = len(np.unique(f.argmax(axis=1)))
    return (f"{classes} of {f.shape[1]} classes predicted, median top-2 margin "
            f"{np.median(top[:, -1] - top[:, -2]):.3g} (logits: mean spread "
            f"{f.std(axis=1).mean():.3g})")


def fidelity_lines(res: dict) -> list[str]:
    paper = method_options("greedy-paper")
    on = [f"{k} {v}" for k, v in GREEDY.to_dict().items() if v != getattr(paper, k)]
    lines = [
        "# Quantizer fidelity at 8 bits: dynfix vs ONNX Runtime int8",
        "",
        "Generated by `bench/quant_table.py`. Every quantizer sees the same folded float graph",
        "and the same calibration inputs; the measures are taken on separate test inputs, on",
        "the output logits (a trailing Softmax is left out): **agreement** = top-1 agreement",
        "with the float model (class outputs only), **SQNR** = output SQNR against the float",
        "model (`10 log10(sum f^2 / sum (f - q)^2)` over all outputs), **accuracy** = top-1",
        "against labels (digits only). **weights** = bytes of weights and biases as stored",
        "(dynfix: 8-bit weights, `bw_in + bw_w`-bit biases; ORT: int8 weights, int32 biases,",
        "float scales and zero points). **hardware** = LUT / DSP change of the engine: most of",
        "dynfix's options are software-only (same integer arithmetic, same engine: 0 / 0);",
        "unsigned maps need a padding value and an output offset per layer (program fields;",
        "the biases fold the input offset, the requantizer compares one bit wider);",
        "per-channel weight formats a data shift per output channel (stored with its bias,",
        "delayed to the requantizer). Both together, on the iCEBreaker digits engine",
        "(synthesized, docs/boards.md): see the README. ORT's float scales would need",
        "per-channel requantization multipliers.",
        "",
        f"`greedy` = greedy-paper + {', '.join(on)}. The `+` rows are greedy-paper with one",
        "addition. †: the search kept greedy-paper's choice, which scored at least as well on",
        "the calibration objective (it scores greedy-paper's choice, the additions', with",
        "equalize the additions' on the equalized model and with fill each of those on the",
        "range-filled model, keeps the best and refines that);",
        "without refine such a row equals greedy-paper. Search time on this 2-core machine in",
        "the last column.",
        "",
    ]
    verdict, sections = [], []
    for case in res["cases"]:
        f = case.model
        cls = is_classes(case)
        sections += [f"## {case.label}: {len(case.calib)} calibration / {len(case.test)} "
                     f"test inputs", "",
                     f"Float32: {float_bytes(f):,} bytes of weights; "
                     f"{len([l for l in f.layers if is_compute(l)])} compute layers; output: "
                     + (margins(case) if cls else "values, not classes (agreement n/a)")
                     + ".", ""]
        rows = []
        for label, r in case.rows.items():
            rows.append([label + (" †" if r.get("fallback") else ""),
                         _pct(r["agreement"] if cls else None), _pct(r.get("accuracy")),
                         f"{r['sqnr']:.2f}", f"{r['bytes']:,}", r["hw"],
                         "-" if r["seconds"] is None else f"{r['seconds']:.1f}"])
        sections += md_table(["quantizer", "agreement %", "accuracy %", "SQNR dB", "weights",
                              "hardware (LUT / DSP)", "search s"], rows) + [""]
        dg = case.rows[DEFAULT]
        ob_a, ob_s = best_ort(case)
        ok = dg["sqnr"] >= ob_s and (not cls or dg["agreement"] >= ob_a)
        verdict.append([case.label, _pct(dg["agreement"] if cls else None),
                        _pct(ob_a if cls else None), f"{dg['sqnr']:.2f}", f"{ob_s:.2f}",
                        f"{dg['sqnr'] - ob_s:+.2f}", "yes" if ok else "**no**"])
    return lines + [
        "## Summary: dynfix greedy (default) against the best per-channel ORT configuration",
        "",
        *md_table(["model", "dynfix agreement %", "best ORT agreement %", "dynfix SQNR dB",
                   "best ORT SQNR dB", "SQNR diff dB", "at least as close"], verdict),
        "", *notes(res), "", *sections]


def notes(res: dict) -> list[str]:
    ad = next(c for c in res["cases"] if c.key == "ad")
    fl, ceiling = output_ceiling(ad)
    dg = ad.rows[DEFAULT]["sqnr"]
    _, ort_s = best_ort(ad)
    out = ["Where dynfix is not as close, and why:", ""]
    behind = [c for c in res["cases"] if c.rows[DEFAULT]["sqnr"] < best_ort(c)[1]]
    if behind:
        out += ["* **SQNR**: " + ", ".join(
            f"{c.key} {best_ort(c)[1] - c.rows[DEFAULT]['sqnr']:.1f} dB behind"
            for c in behind) + ". What remains is the format: power-of-two weight steps",
                "  per output channel (a shift) against ORT's float scale per channel, which",
                "  spends all 255 steps on each channel's largest weight; the range fill gives",
                "  the maps that freedom (one scale per map, absorbed by the weights), not the",
                "  weights."]
    lower = [c for c in res["cases"] if is_classes(c)
             and c.rows[DEFAULT]["agreement"] < best_ort(c)[0]]
    if lower:
        out += ["* **agreement**: " + ", ".join(
            f"{c.key} {100 * (best_ort(c)[0] - c.rows[DEFAULT]['agreement']):.2f} points "
            f"({round((best_ort(c)[0] - c.rows[DEFAULT]['agreement']) * len(c.test))} of "
            f"{len(c.test)} inputs)" for c in lower)
                + ". The random-weight models' logits barely depend on the input",
                "  (section headers: classes predicted, top-2 margins), so their agreement",
                "  moves with single borderline inputs; read SQNR first there."]
    out += [
        "* **AD autoencoder**: the output is a log-mel reconstruction in dB (about -50 to",
        f"  +15). greedy's centred 8-bit output map has a step of {fl:.4g} dB (a power of",
        "  two over the host's output scale, the range fill), and rounding the *float*",
        f"  output to that format alone gives {ceiling:.2f} dB, a ceiling for any choice of",
        f"  the layers before it (greedy: {dg:.2f} dB). ORT's asymmetric output spends its",
        f"  256 steps on exactly [min, max] of the calibration outputs ({ort_s:.2f} dB).",
        "* ORT's Entropy rows equal MinMax: `quantize_static` builds the entropy calibrator",
        "  with 128 histogram bins and 128 quantized bins, so the only threshold it can pick",
        "  is the full range (onnxruntime 1.32).",
    ]
    return out


def anomaly_lines(res: dict) -> list[str]:
    ad = next(c for c in res["cases"] if c.key == "ad")
    return ["## Anomaly detection with the trained autoencoder", "",
            "Test set: 500 normal and 500 anomalous frames (`tools/train_autoencoder.py`);",
            "anomaly score = mean squared error between a frame and its reconstruction; AUC of",
            "that score (MLPerf Tiny's AD metric), and the Pearson correlation of each",
            "quantized model's score with the float model's.", "",
            *md_table(["model", "AUC", "score correlation with float", "output SQNR dB"],
                      anomaly_rows(ad)), ""]


def sweep_lines(d: dict) -> list[str]:
    r = d["rows"]
    lines = [
        "## Bit widths on digits", "",
        "Top-1 accuracy (%) on the digits test split (360 images); calibration on the 360",
        "images of the calib split. Integer model = bit-exact `IntModel`. Weight memory counts",
        "weights and biases of the compute layers at their stored widths (biases at the",
        "default `bw_in + bw_w` bits).", "",
        f"Float (float32): **{d['float']:.2f} %**, {d['float_kib']:.2f} KiB of weights.", "",
        "| bits | greedy-paper | greedy | range | static | greedy - static | greedy - range "
        "| greedy vs float class agreement | weights (KiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for bits in WIDTHS:
        p, g, rg, st = (r[(bits, m)] for m in SWEEP)
        lines.append(f"| {bits} | {p[0]:.2f} | {g[0]:.2f} | {rg[0]:.2f} | {st[0]:.2f} | "
                     f"{g[0] - st[0]:+.2f} | {g[0] - rg[0]:+.2f} | {g[1]:.2f} | {g[2]:.2f} |")
    s = d["svd"]
    lines += [
        "",
        "| other configuration | accuracy | weights (KiB) |",
        "|---|---|---|",
        f"| SVD fc rank {s['rank']} ({s['params'][0]} -> {s['params'][1]} fc weights), "
        f"float | {s['float']:.2f} | {s['float_kib']:.2f} |",
        f"| SVD fc rank {s['rank']}, greedy 16 bit | {s['16'][0]:.2f} | {s['16'][1]:.2f} |",
        f"| SVD fc rank {s['rank']}, greedy 8 bit | {s['8'][0]:.2f} | {s['8'][1]:.2f} |",
        "",
        f"Search time at 8 bits on 500 calibration images (digits train split): "
        f"greedy-paper {d['times']['greedy-paper']:.2f} s, greedy "
        f"{d['times']['greedy']:.2f} s (2-core machine shared with other jobs).",
        "",
        "Notes: `range` is Ristretto's rule as its code has it (no sign bit for activations),",
        "so a map's largest values can saturate: here the input, whose maximum is exactly",
        "1.0, is clipped at 0.5 at every width. `static` uses one fl for all feature maps and",
        "one for all weights of a width. The digits fc layer has only 10 outputs, so it has",
        "little low-rank structure: SVD costs accuracy for a small saving (unlike VGG16's",
        "4096-wide FC layers in the paper).",
        "",
        "![fidelity](quant_fidelity.png) ![accuracy vs bit width](quant_accuracy.png) "
        "![per-layer SQNR](quant_sqnr.png)",
    ]
    return lines


def plots(res: dict) -> None:
    plt = pyplot()
    cs = res["cases"]
    labels = [label for label, _, _ in DYNFIX] + [label for label, _, pc in ORT if pc]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        vals = [c.rows[label]["sqnr"] for c in cs]
        ax.bar(np.arange(len(cs)) + i * width, vals, width, label=label.replace("*", ""),
               hatch="//" if label.startswith("ORT") else None)
    ax.set_xticks(np.arange(len(cs)) + 0.4 - width / 2, [c.key for c in cs])
    ax.set(ylabel="output SQNR vs float (dB)", title="8-bit quantizers, test inputs")
    ax.legend(fontsize=7, ncol=2)
    save_fig(fig, "quant_fidelity.png")
    plt.close(fig)

    d = res["digits"]
    uniform = [w for w in WIDTHS if "/" not in w]
    xs = [int(w) for w in uniform]
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in zip(SWEEP, "o^sd"):
        ax.plot(xs, [d["rows"][(w, method)][0] for w in uniform], marker=marker, label=method)
    ax.axhline(d["float"], color="gray", ls="--", label="float32")
    digits = next(c for c in cs if c.key == "digits")
    ax.plot([8], [100 * digits.rows["ORT MinMax"]["accuracy"]], "k*", ms=10,
            label="ORT int8 (QDQ, MinMax)")
    ax.set(xlabel="bit width (data and weights)", ylabel="top-1 accuracy (%)",
           title="digits test split", xticks=xs)
    ax.legend()
    save_fig(fig, "quant_accuracy.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    layers = list(next(iter(d["sqnr"].values())))
    width = 0.8 / len(WIDTHS)
    for i, bits in enumerate(WIDTHS):
        ax.bar(np.arange(len(layers)) + i * width, [d["sqnr"][bits][n] for n in layers],
               width, label=f"{bits} bit")
    ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2, layers)
    ax.set(ylabel="SQNR of the stored map vs float (dB)", title="greedy, per layer")
    ax.legend()
    save_fig(fig, "quant_sqnr.png")
    plt.close(fig)


def main() -> None:
    res = run_all(log=lambda msg: print(msg, file=sys.stderr, flush=True))
    lines = fidelity_lines(res) + anomaly_lines(res) + sweep_lines(res["digits"])
    write_result("quant_table.md", lines)
    plots(res)


if __name__ == "__main__":
    main()
