"""The compression algorithms side by side on the trained MLPerf Tiny models and two boards.

Writes ``bench/results/compression.md``: ResNet-8, DS-CNN and MobileNetV1 (VWW), each
quantized by ``greedy`` on ``bench/mlperf_data.py``'s calibration inputs as one variant per
algorithm alone (8-bit dynamic fixed point, 8/4/4, weight sharing at 4 and 5 bits and at 4
bits without a codebook entry forced to 0, TTQ's asymmetric and symmetric ternary weights,
low-rank convolutions at the speed-up the low-rank bench found tolerable, channel pruning of
a quarter of the MACs) and two combinations (low-rank convolutions, and pruning, with
8/4/4). Per variant:
the weights' bytes packed (indices and codebooks where shared or ternary) and their ratio to
the float model's 32-bit weights (Deep Compression's measure), MACs, and the integer model's
top-1 agreement and output SQNR against the float model on the held-out test inputs. Per
variant and board (iCEBreaker, ULX3S): the engine ``boards/fit.py`` chooses, its weight
image as it stores it (b-bit indices where the fit chooses them), cycles per inference from
the cycle model, and the latency at the clock the board's engines run at; or the fit's
reason when the model does not fit. No simulation, no synthesis: the clocks come from
``bench/results/mlperf_synth.json`` and ``boards_synth.json``.

Each variant is quantized once and fitted to both boards. MobileNetV1 is quantized on fewer
calibration inputs (``CALIB``): its searches dominate the run time.

Run: ``.venv/bin/python bench/compression.py [--models resnet8,dscnn,vww]
[--boards icebreaker,ulx3s]`` (about 40 minutes on two busy cores; quantization
dominates). ``--variants "pruned 25%;sharing 4 bits, no 0 entry"`` runs only those (a quick
check: the rows are printed, the results file is not written).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mlperf_data as md  # noqa: E402
from codebook_engine import weights_where  # noqa: E402
from common import md_table, write_result  # noqa: E402
from mlperf_engine import read_synth_cache, recorded_clock  # noqa: E402
from ternary import stored_weights  # noqa: E402

from dynfix.boards.fit import fit  # noqa: E402
from dynfix.errors import DynfixError  # noqa: E402
from dynfix.hw.compiler import compile_model  # noqa: E402
from dynfix.hw.config import EngineConfig  # noqa: E402
from dynfix.hw.cycle_model import estimate as cycle_estimate  # noqa: E402
from dynfix.inputs import get_board  # noqa: E402
from dynfix.quant.fidelity import fidelity, float_logits, outputs  # noqa: E402
from dynfix.quant.int_model import IntModel  # noqa: E402
from dynfix.quant.ir import Model  # noqa: E402
from dynfix.quant.load import load_model  # noqa: E402
from dynfix.quant.lowrank_conv import compress_convs  # noqa: E402
from dynfix.quant.pruning import prune  # noqa: E402
from dynfix.quant.search import SearchResult, search_model  # noqa: E402
from dynfix.quant.ternary import ternarizable  # noqa: E402

MODELS = HERE.parent / "models" / "mlperf_tiny"
LABELS = {"resnet8": "ResNet-8", "dscnn": "DS-CNN", "vww": "MobileNetV1 (VWW)"}
#: The names of ``bench/mlperf_engine.py`` (its synthesis cache's keys).
ENGINE_NAMES = {"resnet8": "resnet8", "dscnn": "dscnn", "vww": "mobilenet_v1_025"}
#: Calibration inputs per model (the other benches' 64; MobileNetV1's searches are slow).
CALIB = {"resnet8": 64, "dscnn": 64, "vww": 16}
#: The convolutions' MAC speed-up of the low-rank variants: the smallest target of
#: ``bench/results/lowrank_conv.md``, the only one DS-CNN keeps most of its agreement at.
LOWRANK_SPEEDUP = 1.25
#: The share of the MACs the pruned variants remove (channel pruning, ``response``
#: ranking): the middle target of ``bench/results/pruning.md``.
PRUNE_TARGET = 0.25
#: Deep Compression's published storage ratios against 32-bit floats (Han et al. 2016).
DEEP_COMPRESSION = {"AlexNet": 35, "VGG-16": 49}


@dataclass(frozen=True)
class Variant:
    """One way of compressing a model: what ``search_model`` gets, and whether its
    convolutions are made low-rank first."""

    label: str
    bits: str = "8"
    share: int | None = None
    share_zero: bool = True
    ternary: str | None = None
    ternary_mode: str = "asymmetric"
    lowrank: bool = False
    prune: bool = False             # channels pruned first (PRUNE_TARGET of the MACs)


VARIANTS = (Variant("8-bit"),
            Variant("8/4/4", bits="8/4/4"),
            Variant("sharing 4 bits", share=4),
            Variant("sharing 5 bits", share=5),
            Variant("sharing 4 bits, no 0 entry", share=4, share_zero=False),
            Variant("TTQ asymmetric", ternary="all"),
            Variant("TTQ symmetric", ternary="all", ternary_mode="symmetric"),
            Variant(f"low-rank {LOWRANK_SPEEDUP:g}x", lowrank=True),
            Variant(f"low-rank {LOWRANK_SPEEDUP:g}x + 8/4/4", bits="8/4/4", lowrank=True),
            Variant(f"pruned {PRUNE_TARGET:.0%}", prune=True),
            Variant(f"pruned {PRUNE_TARGET:.0%} + 8/4/4", bits="8/4/4", prune=True))


def packed_bits(r: SearchResult) -> int:
    """The weights of every Conv2d and Linear layer, packed: b-bit indices plus a
    ``2**b``-entry codebook where the spec records sharing (a folded pool's runs once), else
    ``bw_w`` bits each; checked against the sharing and ternary reports."""
    im = IntModel(r.model, r.spec)
    bits = {}
    for layer in im.model.layers:
        if not ternarizable(layer):
            continue
        f = r.spec.layers[layer.name]
        n = stored_weights(im, layer.name)
        bits[layer.name] = n * f.share + (1 << f.share) * f.bw_w if f.share else n * f.bw_w
    for x in [*r.sharing, *r.ternary]:
        assert bits[x.layer] == x.bits_after, x.layer
    return sum(bits.values())


def float_bits(model: Model) -> int:
    """The float model's Conv2d and Linear weights at 32 bits each (as loaded: a pool
    that lowering folds into a Linear layer adds none)."""
    return 32 * sum(int(np.size(layer.weight)) for layer in model.layers
                    if ternarizable(layer))


def image_bytes(cfg: EngineConfig) -> int:
    """The engine's weight image: its weight words (in bulk memory, whole bus beats each),
    with ``w_index_bits`` plus the codebooks."""
    word = cfg.word_beats * cfg.bus_bits if cfg.w_bulk else cfg.weight_word_bits
    return (cfg.weight_depth * word + cfg.codebooks * cfg.codebook_entries
            * cfg.weight_bits) // 8


def clock(name: str, board: str, v: Variant, engine: str) -> tuple[float, str]:
    """The clock (MHz) the engine runs at, and where it comes from: a synthesized build of
    the same engine for this model (``mlperf_synth.json``: at the variant's widths, else at
    8 bits; the trained model's, else the random-weight one's), its PLL clock (or its Fmax
    without one); else the board's digits engine's clock. Only the trained 8-bit model's
    own build is no estimate."""
    cache = read_synth_cache()
    keys = [(b, t) for b in dict.fromkeys((v.bits, "8")) for t in (" trained", "")]
    for bits, trained in keys:
        e = cache.get(f"{ENGINE_NAMES[name]} {board} {bits}{trained}")
        if e is None or e["engine"] != engine:
            continue
        pll = bool(e.get("clock") and e.get("timing_met"))
        what = "PLL" if pll else "Fmax"
        if trained and v == VARIANTS[0] and pll:
            return e["clock"], "PLL, this build"
        src = f"{bits}-bit build" + ("" if trained else " (random weights)")
        return (e["clock"] if pll else e["fmax"]), f"est.: {what} of the {src}"
    return recorded_clock()[board], "est.: digits engine"


def where(cfg: EngineConfig, c) -> str:
    """Where the fitted engine ``c`` keeps its weights: ``codebook_engine``'s text, or
    "logic" for a weight memory too shallow for block RAM."""
    mem = c.estimate.blocks["mem_weights"]
    return "logic" if not cfg.w_bulk and not mem.brams and not mem.sprams else \
        weights_where(cfg, c.estimate)


def board_cells(name: str, v: Variant, r: SearchResult, board: str) -> list[str]:
    """The fitted engine's columns: engine, weight image, cycles, clock, latency."""
    try:
        c = fit(r.model, r.spec, get_board(board)).chosen
    except DynfixError as e:
        return [f"does not fit: {e}", "-", "-", "-", "-"]
    cfg = c.config
    est = cycle_estimate(compile_model(r.model, r.spec, cfg))
    cycles = est["cycles_per_image"]
    stored = f"{cfg.w_index_bits}-bit indices" if cfg.w_index_bits else \
        f"{cfg.weight_bits}-bit weights"
    engine = cfg.summary().replace(f" {cfg.w_index_bits}-bit weight indices", "")
    mhz, src = clock(name, board, v, cfg.summary())
    return [engine, f"{image_bytes(cfg):,} ({stored}; {where(cfg, c)})",
            f"{cycles:,}", f"{mhz:g} ({src})", f"{cycles / (mhz * 1e3):.2f}"]


def run(name: str, boards: list[str], variants=VARIANTS, log=print) -> list[list[str]]:
    """The table's rows of one model: per variant (of ``variants``), one per board."""
    model = load_model(str(MODELS / f"{name}.onnx"))
    cal, test = md.inputs(name, "calib", CALIB[name]), md.inputs(name, "test")
    ref = float_logits(model, test)
    f32 = float_bits(model)
    low: Model | None = None            # the low-rank model, fitted once
    pruned: Model | None = None         # the pruned one, likewise
    rows = []
    for v in variants:
        t0 = time.perf_counter()
        if v.lowrank and low is None:
            low = compress_convs(model, cal, speedup=LOWRANK_SPEEDUP, method="asymmetric").model
        if v.prune and pruned is None:
            pruned = prune(model, cal, target=PRUNE_TARGET).model
        m = low if v.lowrank else pruned if v.prune else model
        r = search_model(m, cal, bits=v.bits, method="greedy", share=v.share,
                         ternary=v.ternary, ternary_mode=v.ternary_mode,
                         share_zero=v.share_zero)
        _, out = outputs(m, r.spec, test, r.model)
        fid = fidelity(ref, out)
        packed = packed_bits(r)
        t1 = time.perf_counter()
        for board in boards:
            engine, image, cycles, mhz, ms = board_cells(name, v, r, board)
            rows.append([LABELS[name], v.label, board, engine,
                         f"{packed // 8:,} ({f32 / packed:.1f}x)", image,
                         f"{r.model.summary()['total_macs']:,}", cycles, mhz, ms,
                         f"{100 * fid.agreement:.1f} %", f"{fid.sqnr_db:.2f}"])
        log(f"{name} {v.label}: quantized in {t1 - t0:.0f} s, fitted in "
            f"{time.perf_counter() - t1:.0f} s")
        for row in rows[-len(boards):]:
            log(" | ".join(row))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet8,dscnn,vww")
    ap.add_argument("--boards", default="icebreaker,ulx3s")
    ap.add_argument("--variants", metavar="LABEL;...",
                    help="only these variants (labels as in the table, ';' between them), "
                         "e.g. for a quick check: printed, the results file not written")
    args = ap.parse_args()
    boards = args.boards.split(",")
    variants = VARIANTS
    if args.variants:
        labels = [v.label for v in VARIANTS]
        unknown = [x for x in args.variants.split(";") if x not in labels]
        if unknown:
            ap.error(f"unknown variants {unknown}; the variants are {labels}")
        variants = [v for v in VARIANTS if v.label in args.variants.split(";")]
    t0 = time.perf_counter()
    rows = [row for name in args.models.split(",") for row in run(name, boards, variants)]
    print(f"{time.perf_counter() - t0:.0f} s in all")
    if args.variants:
        return
    dc = ", ".join(f"{k} {v}x" for k, v in DEEP_COMPRESSION.items())
    calib = ", ".join(f"{LABELS[k]} {v}" for k, v in CALIB.items())
    text = ["# Compression on the trained MLPerf Tiny models and two boards", "",
            "Generated by `bench/compression.py` (no simulation, no synthesis). Each trained",
            "model (`models/mlperf_tiny`) is quantized by `greedy` on calibration inputs of",
            f"`bench/mlperf_data.py` ({calib}: MobileNetV1's searches are the slow part)",
            "as one variant per algorithm alone (docs/compression.md): 8-bit dynamic fixed",
            "point; 8/4/4 (8-bit maps, 4-bit weights); weight sharing at 4 and 5 index",
            "bits (`--share`), and at 4 without a codebook entry forced to 0 (`--share-zero",
            "off`: closer weights, but an engine with padded weight words needs 5-bit",
            "indices for them); TTQ's ternary weights in every Conv2d and Linear layer but",
            "the first and the last, asymmetric and symmetric (`--ternary all`); the",
            f"convolutions low-rank at {LOWRANK_SPEEDUP:g}x fewer MACs (`dynfix compress",
            f"--speedup {LOWRANK_SPEEDUP:g}`, asymmetric fit, then 8 bits); channel",
            f"pruning of {PRUNE_TARGET:.0%} of the MACs (`dynfix compress --prune-target",
            f"{PRUNE_TARGET:g}`, response ranking, then 8 bits); and two combinations, the",
            "low-rank and the pruned model at 8/4/4: the algorithms the engine turns into",
            "fewer bytes and cycles without a codebook lookup.", "",
            "Weights packed: every Conv2d and Linear layer's weights at their width, as",
            "b-bit indices plus a codebook where shared or ternary-asymmetric (a folded",
            "pool's runs once); in brackets the ratio to the float model's weights at 32",
            "bits. Engine: the one `dynfix boards --fit` chooses for the board. Weight",
            "image: the engine's weight words as it stores them (words padded to its",
            "lanes, bus beats in bulk memory; b-bit indices and codebooks where the fit",
            "chooses them), and where. Cycles per inference: the cycle model (image load",
            "and output unload included). Clock: a synthesized build's in",
            "`mlperf_synth.json` of the same engine for this model (its PLL clock, else",
            "its Fmax), else the board's digits engine's (`boards_synth.json`); all but",
            "the trained 8-bit model's own build are estimates. Agreement (top-1) and",
            "SQNR: the integer model against the float (uncompressed) model on 200",
            "held-out test inputs (logits before the softmax).", "",
            f"Storage anchors: Deep Compression (Han, Mao, Dally, ICLR 2016) reports {dc}",
            "against 32-bit floats, from pruning, trained shared weights and Huffman",
            "coding together; 8-bit fixed point alone gives 4x.", "",
            *md_table(["model", "variant", "board", "engine", "weights packed (vs float)",
                       "weight image bytes (stored as; where)", "MACs", "cycles",
                       "clock MHz (source)", "latency ms", "test agreement",
                       "test output SQNR dB"], rows)]
    write_result("compression.md", text)


if __name__ == "__main__":
    main()
