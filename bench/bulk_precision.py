"""Where dynamic precision buys bandwidth: cycles per inference against weight bits for
engines whose weights stream from bulk memory (``w_bulk``), as the paper argues.

Two trained MLPerf Tiny models (8-bit maps; conv and FC weights at 16, 8, 6 and 4 bits,
greedy formats on their calibration inputs) on one engine each, ``tn=4 tm=4`` (16
products, the iCEBreaker's DSP budget), with the weights in bulk memory behind buses of 16,
32 and 64 bits. A weight word is ``16 * bits`` wide and takes ``ceil(16 * bits / bus)``
beats: when a group's tile takes longer to stream than the group before it computes, the
group waits. The autoencoder is all fully connected layers (each weight serves one
product per inference: bound by the bus), DS-CNN mostly convolutions (each weight serves
every output pixel: bound by the products). Cycles come from the cycle model of the bulk
path (``hw/cycle_model.py``, ``ring_layer_cycles``: exact for an ideal memory of
``BULK_LATENCY`` and a beat per cycle, checked against the RTL by the random suite's
``*_bulk`` configurations), so no simulation is needed here.

Writes ``bench/results/bulk_precision.md`` and ``bulk_precision.png``. A few minutes.
Reproduce: ``python bench/bulk_precision.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dynfix  # noqa: E402
from common import md_table, pyplot, save_fig, write_result  # noqa: E402
from dynfix.hw.compiler import compile_model  # noqa: E402
from dynfix.hw.config import EngineConfig  # noqa: E402
from dynfix.hw.cycle_model import estimate  # noqa: E402
from dynfix.hw.timing import BULK_LATENCY  # noqa: E402
from mlperf_data import inputs  # noqa: E402

MODELS = {"ad": "autoencoder", "dscnn": "DS-CNN"}
FOLDER = Path(__file__).resolve().parents[1] / "models" / "mlperf_tiny"
WEIGHT_BITS = (16, 8, 6, 4)
BUS_BITS = (16, 32, 64)
ENGINE = dict(tn=4, tm=4, im2col=1, w_bulk=1)


def sweep(name: str) -> tuple[list[list], dict[int, list[int]]]:
    """Table rows and the cycles per bus width over :data:`WEIGHT_BITS` for one model."""
    calib = inputs(name, "calib")
    rows, series = [], {bus: [] for bus in BUS_BITS}
    for bits in WEIGHT_BITS:
        q = dynfix.quantize(str(FOLDER / f"{name}.onnx"), calib=calib, bits=f"8/{bits}/{bits}")
        on_chip = estimate(compile_model(q.model, q.spec, EngineConfig(tn=4, tm=4, im2col=1)))
        for bus in BUS_BITS:
            cm = compile_model(q.model, q.spec, EngineConfig(**ENGINE, bulk_bits=bus))
            est = estimate(cm)
            waits = sum(r["waits"] for r in est["layers"])
            series[bus].append(est["cycles_per_image"])
            rows.append([MODELS[name], bits, bus, cm.config.word_beats,
                         f"{est['bulk_bytes']:,}", f"{est['cycles_per_image']:,}",
                         f"{waits:,}",
                         f"{est['cycles_per_image'] / on_chip['cycles_per_image']:.2f}"])
            print(f"{name}, {bits}-bit weights, {bus}-bit bus: {est['cycles_per_image']} "
                  f"cycles, {waits} waiting", flush=True)
    return rows, series


def main() -> None:
    results = {name: sweep(name) for name in MODELS}
    plt = pyplot()
    fig, axes = plt.subplots(1, len(MODELS), figsize=(10, 4))
    for ax, (name, (_, series)) in zip(axes, results.items()):
        for bus, cycles in series.items():
            ax.plot(WEIGHT_BITS, [c / 1000 for c in cycles], marker="o",
                    label=f"{bus}-bit bus")
        ax.set_xlabel("weight bits (conv and FC)")
        ax.set_ylabel("cycles per inference (thousands)")
        ax.set_title(f"{MODELS[name]}, tn=4 tm=4, weights from bulk memory")
        ax.set_ylim(bottom=0)
        ax.invert_xaxis()
        ax.legend()
    save_fig(fig, "bulk_precision.png")
    rows = [r for table, _ in results.values() for r in table]
    lines = ["# Weight bits against bandwidth: weights in bulk memory", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             *md_table(["model", "weight bits", "bus bits", "beats a word", "bytes a pass",
                        "cycles per inference", "of which waiting", "vs on-chip weights"],
                       rows),
             "", f"Bulk memory: first beat {BULK_LATENCY} cycles after a burst's address, "
             "then one per cycle. `vs on-chip weights`: the same engine with its weights in "
             "block RAM (one word per cycle), which the iCEBreaker's block RAM cannot hold.",
             "", "![cycles against weight bits](bulk_precision.png)"]
    write_result("bulk_precision.md", lines)


if __name__ == "__main__":
    main()
