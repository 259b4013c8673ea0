"""Weight indices on the engine (``w_index_bits``, ``hw/codebook.py``): the trained MLPerf Tiny
DS-CNN and ResNet-8 shared at 4 and 5 index bits, fitted to the iCEBreaker and the ULX3S.

Each model is quantized to 8 bits by ``greedy`` on ``bench/mlperf_data.py``'s calibration
inputs, unshared and with every Conv2d and Linear layer shared (``--share B``,
``quant/weight_sharing.py``; Q.yaml records ``share: B``). Per board, ``boards/fit.py``'s
choice for the unshared model (8-bit weights), for the shared model (which stores indices
when that helps: the narrowest width every layer's words fit), and for the shared model
with its ``share`` records removed (the same weights stored as 8-bit values: what the
engine did before index storage). Per engine: where the weights live (block RAMs, SPRAMs,
bytes of the bulk image in flash or SDRAM), cycles per inference and the share of products
kept busy (the cycle model, exact against the RTL), the LUT estimate, and the test
agreement of the integer model with the float model. No synthesis.

Run: ``.venv/bin/python bench/codebook_engine.py [--models dscnn,resnet8] [--bits 4,5]
[--boards icebreaker,ulx3s]`` (quantization dominates: about a minute per model and
width on two cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mlperf_data as md  # noqa: E402
import numpy as np  # noqa: E402
from common import md_table, write_result  # noqa: E402

from dynfix.boards.fit import (board_estimate, check_usage, describe_over,  # noqa: E402
                               evaluate_config, fit, lut_bound)
from dynfix.errors import DynfixError  # noqa: E402
from dynfix.hw.config import EngineConfig  # noqa: E402
from dynfix.hw.compiler import compile_model  # noqa: E402
from dynfix.hw.cycle_model import estimate as cycle_estimate  # noqa: E402
from dynfix.inputs import get_board  # noqa: E402
from dynfix.quant.fidelity import fidelity, outputs  # noqa: E402
from dynfix.quant.load import load_model  # noqa: E402
from dynfix.quant.ir import Flatten, Linear, Model  # noqa: E402
from dynfix.quant.qspec import LayerFormat, QuantSpec  # noqa: E402
from dynfix.quant.search import search_model  # noqa: E402

MODELS = HERE.parent / "models" / "mlperf_tiny"
LABELS = {"resnet8": "ResNet-8", "dscnn": "DS-CNN"}
CALIB = 64


def unrecorded(spec: QuantSpec) -> QuantSpec:
    """``spec`` without its layers' ``share`` records: the fit then stores the shared
    weights as ordinary weights."""
    return replace(spec, layers={n: replace(f, share=0) if isinstance(f, LayerFormat) else f
                                 for n, f in spec.layers.items()})


def weights_where(cfg: EngineConfig, est) -> str:
    """Where the engine keeps its weights: memory blocks, or the bulk image's bytes in its
    store (and the ring's blocks)."""
    mem = est.blocks["mem_weights"]
    blocks = f"{mem.brams} BRAM" + (f", {mem.sprams} SPRAM" if mem.sprams else "")
    if not cfg.w_bulk:
        return blocks
    image = cfg.weight_depth * cfg.word_beats * cfg.bus_bits // 8
    return f"{image:,} B in {cfg.bulk_store.value} (ring {blocks})"


def engine_row(model, spec, c, label: str, share: str, board: str, agree: str,
               chosen: bool) -> list:
    """One table row: the evaluated engine ``c`` of ``model`` quantized as ``spec``."""
    cfg = c.config
    est = cycle_estimate(compile_model(model, spec, cfg))
    stored = f"{cfg.w_index_bits}-bit indices" if cfg.w_index_bits else "8-bit weights"
    engine = cfg.summary().replace(f" {cfg.w_index_bits}-bit weight indices", "")
    return [label, share, board, engine, stored, weights_where(cfg, c.estimate),
            f"{c.cycles:,}", f"{est['utilization']:.1%}",
            f"{round(c.estimate.total.luts):,}",
            ("**fit**" if chosen else "") + ("" if c.fits else f" over: {describe_over(c.over)}"),
            agree]


def both_ways(model, spec, b: int, label: str, share: str, board: str, agree: str) -> list:
    """The fit's engine for the shared ``model`` on ``board``, its weights stored as 8-bit
    values and as indices (the narrowest from ``b`` up that every layer's words fit): two
    rows, the fit's choice marked."""
    brd = get_board(board)
    chosen = fit(model, spec, brd).chosen
    choice = {**chosen.config.choice(), "w_index_bits": 0}
    plain = evaluate_config(model, unrecorded(spec), EngineConfig.from_dict(choice), brd)
    rows = [engine_row(model, spec, plain, label, share, board, agree,
                       not chosen.config.w_index_bits)]
    for bb in (b, b + 1):
        try:
            idx = evaluate_config(model, spec, EngineConfig.from_dict(
                {**choice, "w_index_bits": bb}), brd)
        except DynfixError:             # a layer's words take more than 2**bb values
            continue
        rows.append(engine_row(model, spec, idx, label, share, board, agree,
                               bool(chosen.config.w_index_bits)))
        break
    return rows


def flash_row(model, spec, base: EngineConfig, bits: int, label: str, share: str) -> list:
    """The engine ``base`` (a fit's choice on the iCEBreaker) with its weights read from the
    SPI flash at run time on an 8-bit bus (the fit's last placement, for weights SPRAM
    cannot hold), storing ``bits``-bit indices (the narrowest from ``bits`` up that every
    layer's words fit; 0: 8-bit weights): the weight image, cycles, the cycles the layers
    wait for their tiles, products busy, LUTs and whether it fits the board."""
    board = get_board("icebreaker")
    cfg = EngineConfig.from_dict({**base.choice(), "w_spram": 0, "w_bulk": 1, "bulk_bits": 8,
                                  "bulk_store": "flash", "w_index_bits": 0})
    cm = None
    for b in ((bits, bits + 1) if bits else (0,)):
        try:
            cm = compile_model(model, spec, replace(cfg, w_index_bits=b))
            break
        except DynfixError:
            continue
    cfg = cm.config
    est = cycle_estimate(cm)
    use = board_estimate(cfg, board)
    over = check_usage(use.total, board, lut_bound(cfg, board))
    image = cfg.weight_depth * cfg.word_beats * cfg.bus_bits // 8
    stored = f"{cfg.w_index_bits}-bit indices" if cfg.w_index_bits else "8-bit weights"
    engine = cfg.summary().replace(f" {cfg.w_index_bits}-bit weight indices", "")
    return [label, share, stored, engine, f"{image:,}", f"{est['cycles_per_image']:,}",
            f"{sum(r['waits'] for r in est['layers']):,}", f"{est['utilization']:.1%}",
            f"{round(use.total.luts):,}", "yes" if not over else describe_over(over)]


def large_fc(outputs: int = 2048, inputs: int = 96) -> tuple[Model, QuantSpec]:
    """One Linear layer too large for the iCEBreaker's SPRAM at 8 bits (``outputs x
    inputs`` weights, seeded), its weights drawn from 16 values (0 among them) and its
    Q.yaml row recording 4-bit sharing: what ``--share 4`` leaves of such a layer."""
    rng = np.random.default_rng(0)
    w = rng.choice(np.arange(-8, 8) * 16 / 128.0, (outputs, inputs)).astype(np.float32)
    model = Model("fc_large", "input", (1, 8, inputs // 8), [
        Flatten("flat", ("input",)),
        Linear("fc", ("flat",), weight=w, bias=np.zeros(outputs, np.float32))])
    fmt = LayerFormat("fc", bw_w=8, fl_w=7, bw_b=16, fl_b=10, bw_in=8, fl_in=6, bw_x=8,
                      fl_out=4, acc_bits=24, share=4)
    return model, QuantSpec("fc_large", "static", "8", 8, 6, {"fc": fmt})


def fc_rows(log=print) -> list[list]:
    """:func:`large_fc` fitted to the iCEBreaker with its weights as 8-bit values (the
    share record removed) and as the fit stores them."""
    model, spec = large_fc()
    rows = []
    for s in (unrecorded(spec), spec):
        c = fit(model, s, get_board("icebreaker")).chosen
        rows.append(engine_row(model, s, c, "Linear 2048 x 96 (synthetic)",
                               "4 bits" if s is spec else "4 bits, not recorded",
                               "icebreaker", "-", True)[:-1])
        log(" | ".join(rows[-1]))
    return rows


def run(name: str, bits: list[int], boards: list[str], log=print
        ) -> tuple[list[list], list[list]]:
    model = load_model(str(MODELS / f"{name}.onnx"))
    cal, test = md.inputs(name, "calib", CALIB), md.inputs(name, "test")
    rows, flash = [], []
    base = None                         # the unshared model's iCEBreaker engine
    for b in [None] + bits:
        t0 = time.perf_counter()
        r = search_model(model, cal, bits="8", method="greedy", share=b)
        ref, out = outputs(model, r.spec, test, r.model)
        agree = f"{100 * fidelity(ref, out).agreement:.1f} %"
        log(f"{name} share {b}: quantized in {time.perf_counter() - t0:.0f} s, {agree}")
        share = "none" if b is None else f"{b} bits"
        for board in boards:
            if b is None:
                c = fit(r.model, r.spec, get_board(board)).chosen
                new = [engine_row(r.model, r.spec, c, LABELS[name], share, board, agree,
                                  True)]
                if board == "icebreaker":
                    base = c.config
            else:
                new = both_ways(r.model, r.spec, b, LABELS[name], share, board, agree)
            rows += new
            for x in new:
                log(" | ".join(x))
        if base is not None:
            for bb in ([0] if b is None else [0, b]):
                flash.append(flash_row(r.model, r.spec, base, bb, LABELS[name], share))
                log(" | ".join(flash[-1]))
    return rows, flash


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="dscnn,resnet8")
    ap.add_argument("--bits", default="4,5")
    ap.add_argument("--boards", default="icebreaker,ulx3s")
    args = ap.parse_args()
    bits = [int(v) for v in args.bits.split(",")]
    boards = args.boards.split(",")
    rows, flash = [], []
    large = fc_rows()
    for name in args.models.split(","):
        a, f = run(name, bits, boards)
        rows, flash = rows + a, flash + f
    text = ["# Weight indices on the engine (codebook lookup)", "",
            "Generated by `bench/codebook_engine.py` (no synthesis). The trained models",
            f"(`models/mlperf_tiny`), quantized to 8 bits by `greedy` on {CALIB} calibration",
            "inputs of `bench/mlperf_data.py`, unshared and with every Conv2d and Linear",
            "layer's weights shared (`dynfix quantize --share B`, one entry of each",
            "codebook at 0 for the engine's padding). Per board, the engine",
            "`dynfix boards --fit` chooses; for a shared model that engine's parallelism",
            "with its weights stored as 8-bit values and as b-bit codebook indices",
            "(`w_index_bits`, `hw/codebook.py`: the narrowest b from the sharing's width",
            "up that every layer's words fit), each placed as the fit places it, and which",
            "of the two the fit chose (indices when they make the engine fit, save cycles,",
            "or save memory blocks worth more than the lookup's LUTs). Weights: the weight",
            "memory's block RAMs / SPRAMs, or the bulk image's bytes in flash or SPRAM",
            "(iCEBreaker) or SDRAM (ULX3S) with the ring's blocks. Cycles per inference",
            "and products busy: the cycle model (exact against the RTL). LUTs: the fit's",
            "estimate, the codebook lookup included. Agreement: top-1 of the integer model",
            "against the float model on the held-out test inputs.", "",
            *md_table(["model", "sharing", "board", "engine", "weights stored as",
                       "weights", "cycles", "products busy", "LUTs (est.)", "fit's choice",
                       "test agreement"], rows), "",
            "## Weights streamed from the iCEBreaker's flash", "",
            "The unshared model's iCEBreaker engine (its parallelism and maps) with its",
            "weights read from the SPI flash at run time over an 8-bit bus instead (the",
            "fit's placement for weights that SPRAM cannot hold: a nibble per two cycles),",
            "storing 8-bit weights or b-bit indices (the narrowest from the sharing's width",
            "up that every layer's words fit, their padding's zero included). Waits: cycles",
            "the layers wait for their weight tiles.", "",
            *md_table(["model", "sharing", "weights stored as", "engine", "flash bytes",
                       "cycles", "waits", "products busy", "LUTs (est.)", "fits"], flash), "",
            "## A layer the SPRAM holds only as indices", "",
            "A synthetic Linear layer of 2048 x 96 weights drawn from 16 values (0 among",
            "them), its Q.yaml row recording `share: 4`: 196,608 bytes at 8 bits, more than",
            "the iCEBreaker's 128 KiB of SPRAM, so its weights stream from the flash at run",
            "time; as 4-bit indices they fit the SPRAM. The fit's engine either way",
            "(\"not recorded\": the same weights without the record, stored as 8-bit",
            "values).", "",
            *md_table(["model", "sharing", "board", "engine", "weights stored as",
                       "weights", "cycles", "products busy", "LUTs (est.)", "fit's choice"],
                      large)]
    write_result("codebook_engine.md", text)


if __name__ == "__main__":
    main()
