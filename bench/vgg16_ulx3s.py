"""The paper's VGG16 (224 x 224, SVD-compressed FC6, 8/4 bits) on the ULX3S: weights and
maps in its SDRAM.

VGG16-SVD as Qiu et al. ran it: 13 conv 3x3 pad 1 + ReLU, 5 max-pools, FC6 through a
rank-500 bottleneck (25088 -> 500 -> 4096), FC7, FC8; 8-bit maps and conv weights, 4-bit FC
weights (``--bits 8/4``). The weights are seeded random (He-scaled), quantized with the
``range`` method on two random images (the formats only matter for the arithmetic's widths
here: bit-exactness does not depend on them, and no accuracy is claimed). The fit
(``dynfix.boards.fit``) refuses the network on the ULX3S (its weight image needs more
than the 32 MB SDRAM, see the results), so the engine is chosen by hand (``ENGINE``): the
weights and the maps that do not fit its block RAM in SDRAM (``w_bulk``, ``m_bulk``:
layers around such maps run in row strips). The cycle model gives every layer's cycles
with the SDRAM's bandwidth (a 16-bit port); two parts run on the built path in Verilator,
with the SDRAM controller (``hw/sdram_axi.py``) and the chip model (``sim/sdram_model.v``,
which fails the run on any broken rule), against the integer model: the first CONV group (conv1_1,
conv1_2, pool1: its input streamed in strips into SDRAM, its 112 x 112 x 64 output back in
strips) and FC6 (its 14.6M weights streamed through the ring).

Writes ``bench/results/vgg16_ulx3s.md`` and ``vgg16_ulx3s.json`` (the ULX3S row of
``paper_vgg16.md``). Run: ``.venv/bin/python bench/vgg16_ulx3s.py`` (quantization, the
fit, two Verilator builds and about 40M simulated cycles: tens of minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, md_table, write_result  # noqa: E402
from vgg11_ulx3s import conv_stack  # noqa: E402

from dynfix.hw.cycle_model import estimate, per_layer  # noqa: E402
from dynfix.quant.ir import Flatten, Linear, Model, ReLU  # noqa: E402
from dynfix.quant.qspec import QuantSpec  # noqa: E402

#: VGG16 (configuration D): output channels per conv, "M" = a 2x2 max-pool.
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"]
#: FC6's SVD rank (25088 x 4096 -> 25088 x 500 + 500 x 4096: 14.6M weights).
RANK = 500
SIZE = 224
#: The engine: the fit refuses VGG16-SVD on the ULX3S (its weight image does not fit the
#: SDRAM, see the results), so this one is chosen by hand: 78 products on MULT18X18D, the
#: first conv on the host's windows, weights and maps in SDRAM on a 16-bit port, a map
#: memory of 32,768 words.
ENGINE = {"tn": 6, "tm": 13, "im2col": 1, "multiplier": "ecp5", "w_bulk": 1, "bulk_bits": 16,
          "bulk_store": "sdram", "m_bulk": 32768}
#: The clock the latency is quoted at: an assumption, labelled (no board top drives the
#: SDRAM yet, so no bitstream of this engine exists to close timing on).
CLOCK_MHZ = 100.0


def vgg16_svd(seed: int = 0) -> Model:
    """VGG16-SVD for 3 x 224 x 224 inputs with seeded He-scaled random weights."""
    rng = np.random.default_rng(seed)
    layers, x, c = conv_stack(VGG16, rng)
    layers.append(Flatten("flatten", (x,)))
    prev = "flatten"
    for name, fi, fo, relu in (("fc6a", c * (SIZE // 32) ** 2, RANK, False),
                               ("fc6", RANK, 4096, True), ("fc7", 4096, 4096, True),
                               ("fc8", 4096, 1000, False)):
        w = rng.standard_normal((fo, fi), dtype=np.float32) * np.float32(np.sqrt(2 / fi))
        layers.append(Linear(name, (prev,), weight=w,
                             bias=None if name == "fc6a" else np.zeros(fo, np.float32)))
        prev = name
        if relu:
            layers.append(ReLU(f"{name}_relu", (name,)))
            prev = f"{name}_relu"
    return Model("vgg16_svd", "x", (3, SIZE, SIZE), layers)


def part(model: Model, spec: QuantSpec, first: str, last: str, name: str
         ) -> tuple[Model, QuantSpec]:
    """The layers from ``first`` to ``last`` as a model of their own (their input the map
    ``first`` reads) with the formats they have in ``spec``: the input's width and
    fraction are those of the map ``first`` reads."""
    names = [layer.name for layer in model.layers]
    layers = model.layers[names.index(first):names.index(last) + 1]
    source = layers[0].inputs[0]
    shape = tuple(model.shape(source))
    fmt = spec.layers[next(layer.name for layer in layers if layer.name in spec.layers)]
    sub = Model(name, source, shape, layers)
    keep = {layer.name for layer in layers}
    sub_spec = QuantSpec(name, spec.method, spec.bits, fmt.bw_in, fmt.fl_in,
                         {k: v for k, v in spec.layers.items() if k in keep})
    return sub, sub_spec


def moved_bytes(cm) -> dict[str, int]:
    """Bytes each layer moves over the SDRAM port per inference: its weights (once per
    strip) and its map loads and stores."""
    cfg = cm.config
    beat = cfg.bus_bits // 8
    out: dict[str, int] = defaultdict(int)
    for p in cm.plans:
        e = p.entry
        if p.kind not in ("load", "unload"):
            tile = e["w_tile"] or p.kernel[0] * p.kernel[1] * e["t_in"]
            out[p.name] += tile * e["n_mg"] * cfg.word_beats * beat
        out[p.name] += (e["di_words"] + e["do_words"]) * cfg.map_beats * beat
    return out


def simulate_part(sub: Model, spec: QuantSpec, config: dict, folder: Path, sim: str,
                  seed: int) -> dict:
    """Generate ``sub`` on the engine ``config`` and run one random input through its
    Verilog: bit-exactness, the counters, the model's cycles."""
    import dynfix

    t0 = time.time()
    g = dynfix.generate(spec, folder / "gen", config=config, model=sub)
    x = np.random.default_rng(seed).standard_normal((1,) + tuple(sub.input_shape))
    s = dynfix.simulate(g, data=x.astype(np.float32), images=1, simulator=sim,
                        build_dir=folder / "build")
    est = estimate(g.compiled)
    return {"mismatches": s.details.mismatches, "values": int(s.outputs.size),
            "cycles": [int(c) for c in s.layer_cycles[0]],
            "model": [row["cycles"] for row in est["layers"]],
            "names": [row["name"] for row in est["layers"]],
            "sim_rate": s.details.sim_cycles_per_s, "seconds": time.time() - t0}


def run(folder: Path, sim: str) -> dict:
    import dynfix
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.config import EngineConfig
    from dynfix.errors import DynfixError
    from dynfix.quant.search import search

    t0 = time.time()
    model = vgg16_svd()
    calib = np.random.default_rng(1).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    spec = search(model, calib, bits="8/4", method="range")
    seconds = {"quantize": time.time() - t0}
    t0 = time.time()
    try:
        dynfix.fit(spec, board="ulx3s", model=model)
        refusal = ""
    except DynfixError as e:
        refusal = str(e)
    cm = compile_model(model, spec, EngineConfig(**ENGINE))
    config = ENGINE
    est = estimate(cm)
    seconds["fit and compile"] = time.time() - t0
    parts = {}
    for key, (first, last, seed) in {"group1": ("conv1_1", "pool1", 3),
                                     "fc6": ("flatten", "fc6_relu", 4)}.items():
        sub, sub_spec = part(model, spec, first, last, f"vgg16_{key}")
        parts[key] = simulate_part(sub, sub_spec, config, folder / key, sim, seed)
        seconds[f"simulate {key}"] = parts[key]["seconds"]
    return {"cm": cm, "est": est, "refusal": refusal, "config": config, "parts": parts,
            "seconds": seconds}


def report(r: dict) -> tuple[list[str], dict]:
    cm, est = r["cm"], r["est"]
    cfg = cm.config
    moved = moved_bytes(cm)
    rows = []
    for row in per_layer(est["layers"]):
        name = row["name"]
        bound = ("transfer" if row["kind"] in ("load", "unload") else
                 "bandwidth" if row["dma"] + row["waits"] >= row["cycles"] / 2 else "compute")
        util = row["macs"] / (row["cycles"] * cfg.multipliers) if row["macs"] else 0.0
        rows.append([name, row["entries"], f"{row['macs']:,}", f"{row['cycles']:,}",
                     f"{row['dma']:,}", f"{row['waits']:,}", f"{moved[name]:,}",
                     f"{util:.1%}", bound])
    total = est["cycles_per_image"]
    ms = total / (CLOCK_MHZ * 1e3)
    gops = 2 * est["macs"] / (ms * 1e6)
    parts = r["parts"]
    summary = {"engine": cfg.summary(), "products": cfg.multipliers,
               "cycles_per_image": total, "clock_mhz_assumed": CLOCK_MHZ,
               "latency_ms": round(ms, 1), "gops": round(gops, 2),
               "bytes_moved": int(sum(moved.values())),
               "parts": {k: {"bit_exact": v["mismatches"] == 0,
                             "cycles": sum(v["cycles"]), "model": sum(v["model"])}
                         for k, v in parts.items()}}
    lines = [
        "# The paper's VGG16 (224 x 224, SVD FC6, 8/4 bits) on the ULX3S from SDRAM",
        "",
        "Generated by `bench/vgg16_ulx3s.py` (see its docstring): seeded random weights, "
        "`range` formats at 8/4 bits, an engine for the ULX3S (by hand) with the weights and "
        "the maps that do not fit on chip in SDRAM.",
        "",
        f"* engine (by hand): {cfg.summary()} ({cfg.multipliers} products), map memory "
        f"{cfg.fmap_depth:,} words (`m_bulk` {cfg.m_bulk:,}), weight ring {cfg.w_ring} "
        f"words",
        f"* `dynfix.fit` on the ULX3S: {r['refusal'] or 'fits'}",
        f"* bulk image: weights {cfg.weight_depth * cfg.word_beats * 2:,} bytes (every "
        f"weight in an 8-bit lane: the engine has one weight width, the conv layers' 8 "
        f"bits, so FC's 4-bit weights take as much room and bandwidth as 8-bit ones), "
        f"maps {cfg.map_bulk * 2:,} bytes: {(cfg.maps_base + cfg.map_bulk) * 2:,} bytes "
        f"against the ULX3S's 33,554,432; moved per inference "
        f"{summary['bytes_moved']:,} bytes (a layer in strips reads its weights once per "
        f"strip)",
        f"* cycles per image (cycle model, with the SDRAM's 16-bit port): {total:,}; at an "
        f"assumed {CLOCK_MHZ:.0f} MHz (no bitstream: no board top drives the SDRAM yet) "
        f"{ms:.1f} ms, {gops:.1f} GOP/s",
        "* seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items()),
        "",
        "## Built path in simulation (Verilator, SDRAM controller and chip model)",
        "",
    ]
    for key, v in parts.items():
        lines.append(f"* {key}: {v['values']:,} output values, {v['mismatches']} "
                     f"mismatching; counters {sum(v['cycles']):,} cycles, model "
                     f"{sum(v['model']):,} (a lower bound with the SDRAM: "
                     f"{sum(v['cycles']) / sum(v['model']) - 1:+.2%}); "
                     f"{v['sim_rate']:,.0f} simulated cycles/s")
    lines += ["", "## Every layer (cycle model)", ""]
    lines += md_table(["layer", "entries", "MACs", "cycles", "map transfers", "waits for "
                       "weights", "SDRAM bytes", "utilization", "bound"], rows)
    return lines, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", default="verilator")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = run(Path(tmp), args.sim)
        lines, summary = report(r)
    write_result("vgg16_ulx3s.md", lines)
    (OUT / "vgg16_ulx3s.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
