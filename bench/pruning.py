"""Structured channel pruning on the trained MLPerf Tiny DS-CNN and ResNet-8, on the engine.

Writes ``bench/results/pruning.md``: each model pruned (``quant/pruning.py``, no retraining)
for a few targets of its MACs removed, per-layer fractions from the sensitivity sweep on
``bench/mlperf_data.py``'s calibration inputs, channels ranked by their layer-response
error (and, for comparison, by filter L1 norm). Per model and target: MACs, weight bytes
(8-bit), top-1 agreement and output SQNR of the pruned float model and of the pruned model
quantized to 8 bits by ``greedy``, both against the unpruned float model on the held-out
test inputs; then per board (iCEBreaker, ULX3S) the cycles per inference of the engine
``boards/fit.py`` chooses for the quantized model, and on the engine it chose for the
unpruned model (the cycle model, exact against the RTL; no synthesis). Then the same
targets with every kept channel count rounded up to a multiple of each board's engine's
``tm`` (``prune(..., multiple=tm)``): cycles without -> with the rounding. Then, per layer
at one target, channels, sparsity, MACs, weights and cycles before and after.

Run: ``.venv/bin/python bench/pruning.py [--models dscnn,resnet8] [--targets 0.1,0.25,0.4]
[--boards icebreaker,ulx3s] [--detail 0.25]`` (about half an hour on two cores:
quantization and the sweeps dominate).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mlperf_data as md  # noqa: E402
from common import md_table, write_result  # noqa: E402

from dynfix.boards.fit import evaluate_config, fit  # noqa: E402
from dynfix.hw.compiler import compile_model  # noqa: E402
from dynfix.hw.config import EngineConfig  # noqa: E402
from dynfix.hw.cycle_model import estimate as cycle_estimate  # noqa: E402
from dynfix.inputs import get_board  # noqa: E402
from dynfix.quant.fidelity import agreement, fidelity, float_logits, outputs, sqnr_db  # noqa
from dynfix.quant.load import load_model  # noqa: E402
from dynfix.quant.pruning import prune  # noqa: E402
from dynfix.quant.search import search_model  # noqa: E402

MODELS = HERE.parent / "models" / "mlperf_tiny"
LABELS = {"resnet8": "ResNet-8", "dscnn": "DS-CNN"}
BOARDS = {"icebreaker": "iCEBreaker", "ulx3s": "ULX3S"}
CALIB = 64


def engines(model, ref, test, cal, boards, base, log) -> tuple[list, dict]:
    """Quantize ``model`` (8-bit greedy), its integer model's fidelity against ``ref`` on
    ``test``, and per board the fit's engine and cycles and the cycles on ``base[board]``
    (the unpruned model's engine; filled in when ``base`` is empty); also each layer's
    cycles on the base engines."""
    t0 = time.perf_counter()
    q = search_model(model, cal, bits="8", method="greedy")
    _, out = outputs(model, q.spec, test, q.model)
    f = fidelity(ref, out)
    log(f"  quantized in {time.perf_counter() - t0:.0f} s: {100 * f.agreement:.1f} %")
    cells, per_layer = [f"{100 * f.agreement:.1f} %", f"{f.sqnr_db:.2f}"], {}
    for board in boards:
        brd = get_board(board)
        c = fit(q.model, q.spec, brd).chosen
        if board not in base:                    # the knobs, sized anew for each model
            base[board] = EngineConfig.from_dict(c.config.choice())
        same = evaluate_config(q.model, q.spec, base[board], brd)
        est = cycle_estimate(compile_model(q.model, q.spec, same.config))
        per_layer[board] = {r["name"]: r["cycles"] for r in est["layers"]}
        cells += [f"{c.cycles:,} ({c.config.summary()})" if c.fits else "does not fit",
                  f"{same.cycles:,}" + ("" if same.fits else " (over)")]
    return cells, per_layer


def on_tiles(label: str, model, ref, test, cal, t: float, boards: list[str], base: dict,
             plain, cells: list[str], log) -> list[list]:
    """Per board, ``model`` pruned for the target ``t`` with every kept channel count a
    multiple of the ``tm`` of ``base[board]`` (the unpruned model's engine), quantized: its
    MACs, agreement and cycles against ``plain`` (the pruning without rounding), whose
    :func:`engines` columns are ``cells``."""
    rows = []
    for i, board in enumerate(boards):
        tm = base[board].tm
        t0 = time.perf_counter()
        r = prune(model, cal, target=t, rank="response", multiple=tm)
        dt = time.perf_counter() - t0
        out = float_logits(r.model, test)
        fit_plain, same_plain = cells[2 + 2 * i:4 + 2 * i]
        if [f.pruned for f in r.families] == [f.pruned for f in plain.families]:
            tiled = cells[:2] + [fit_plain, same_plain]             # the same model
        else:
            tiled, _ = engines(r.model, ref, test, cal, [board], base, log)
        rows.append([label, f"{100 * t:g} %", BOARDS[board], tm,
                     f"{r.macs_after:,} ({1 - r.macs_after / r.macs_before:.1%} fewer; "
                     f"{dt:.0f} s)", " ".join(f"{f.pruned}/{f.units}" for f in r.families),
                     f"{100 * agreement(ref, out):.1f} %", tiled[0],
                     f"{same_plain} -> {tiled[3]}",
                     f"{fit_plain.split(' (')[0]} -> {tiled[2]}"])
        log(" | ".join(map(str, rows[-1])))
    return rows


def run(name: str, targets: list[float], boards: list[str], detail: float, log=print
        ) -> tuple[list[list], list[list], list[list], list[list]]:
    model = load_model(str(MODELS / f"{name}.onnx"))
    cal, test = md.inputs(name, "calib", CALIB), md.inputs(name, "test")
    ref = float_logits(model, test)
    s = model.summary()
    weights0 = sum(int(layer.weight_array().size) for layer in model.layers if layer.compute)
    base: dict = {}
    log(f"{name}: original")
    cells, cyc0 = engines(model, ref, test, cal, boards, base, log)
    rows = [[LABELS[name], "-", "original", f"{s['total_macs']:,}", f"{weights0:,}",
             "100.0 %", "inf", *cells]]
    sweeps, per_layer, tiles = [], [], []
    for t in targets:
        for rank in ("response", "l1"):
            t0 = time.perf_counter()
            r = prune(model, cal, target=t, rank=rank)
            dt = time.perf_counter() - t0
            out = float_logits(r.model, test)
            row = [LABELS[name], f"{100 * t:g} %", f"{rank} ({dt:.0f} s)",
                   f"{r.macs_after:,} ({1 - r.macs_after / r.macs_before:.1%} fewer)",
                   f"{r.weights_after:,}", f"{100 * agreement(ref, out):.1f} %",
                   f"{sqnr_db(ref, out):.2f}"]
            log(f"{name} {t} {rank}: " + " | ".join(row))
            if rank == "l1":
                rows.append(row + ["-"] * (2 + 2 * len(boards)))
                continue
            cells, cyc = engines(r.model, ref, test, cal, boards, base, log)
            rows.append(row + cells)
            log(" | ".join(rows[-1]))
            tiles += on_tiles(LABELS[name], model, ref, test, cal, t, boards, base, r, cells,
                              log)
            sweeps += [[LABELS[name], f"{100 * t:g} %", f.name, f"{f.pruned}/{f.units}",
                        " ".join(f"{p.sqnr_db:.0f}" if p.sqnr_db < 1e3 else "inf"
                                 for p in f.sweep)] for f in r.families]
            if t == detail:
                for x in r.layers:
                    cells = [f"{cyc0[b].get(x.layer, 0):,} -> {cyc[b].get(x.layer, 0):,}"
                             for b in boards]
                    per_layer.append([LABELS[name], x.layer, x.op,
                                      f"{x.out_before} -> {x.out_after}",
                                      f"{x.in_before} -> {x.in_after}",
                                      f"{100 * x.sparsity:.0f} %",
                                      f"{x.macs_before:,} -> {x.macs_after:,}",
                                      f"{x.weights_before:,} -> {x.weights_after:,}", *cells])
    return rows, sweeps, per_layer, tiles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="dscnn,resnet8")
    ap.add_argument("--targets", default="0.1,0.25,0.4")
    ap.add_argument("--boards", default="icebreaker,ulx3s")
    ap.add_argument("--detail", type=float, default=0.25,
                    help="the target whose layers are tabulated")
    args = ap.parse_args()
    targets = [float(v) for v in args.targets.split(",")]
    boards = args.boards.split(",")
    rows, sweeps, per_layer, tiles = [], [], [], []
    for name in args.models.split(","):
        a, b, c, d = run(name, targets, boards, args.detail)
        rows, sweeps, per_layer, tiles = rows + a, sweeps + b, per_layer + c, tiles + d
    heads = [h for b in boards for h in (f"{BOARDS[b]}: fit's engine cycles",
                                          f"{BOARDS[b]}: cycles on the original's engine")]
    fractions = "1/16, 2/16, ..., 12/16"
    text = ["# Structured channel pruning on the trained MLPerf Tiny models", "",
            "Generated by `bench/pruning.py`. Whole output channels of the Conv2d and Linear",
            "layers are removed (`dynfix compress --prune-target T`, `quant/pruning.py`),",
            "with the depthwise filters and input channels that go with them; a residual",
            "Add's two producers lose the same channels; the classifier's outputs stay. No",
            "retraining: the channels go lowest score first (`response`: the error their",
            "removal leaves in the next layers' responses, after refitting those layers'",
            "biases for the removed channels' mean; `l1`: the filters' L1 norm), and the",
            "per-layer fractions come from a sensitivity sweep on",
            f"{CALIB} calibration inputs of `bench/mlperf_data.py`: each layer (family of",
            "tied layers) pruned alone, output SQNR against the float model; then every",
            "family prunes what keeps its own sweep SQNR above one threshold, the highest",
            "that removes the target share of the MACs.", "",
            "MACs and weights (the Conv2d/Linear weights: bytes at 8 bits) of the float",
            "model. Agreement (top-1) and SQNR: against the unpruned float model on the",
            "held-out test inputs (logits before the softmax), for the pruned float model",
            "and for it quantized to 8 bits by `greedy` (the `response` rows). Cycles per",
            "inference from the cycle model (exact against the RTL) on the engine",
            "`boards/fit.py` chooses for the quantized model, and on the engine it chose",
            "for the unpruned one. No synthesis.", "",
            *md_table(["model", "target", "ranking (prune s)", "MACs", "weight bytes",
                       "float agreement", "float SQNR dB", "8-bit agreement",
                       "8-bit SQNR dB", *heads], rows), "",
            "## Sensitivity sweep", "",
            f"Output SQNR (dB, calibration inputs) of each family pruned alone at {fractions}",
            "of its channels (rounded to whole channels), `response` ranking, and the",
            "channels the target took from it.", "",
            *md_table(["model", "target", "family", "pruned", "sweep SQNR dB"], sweeps), "",
            "## Rounded to the engine's tile (`--prune-multiple`)", "",
            "The `response` pruning again, every pruned family's kept channel count rounded",
            "up to a multiple of the tm (output channels per group) of the engine the fit",
            "chose for the unpruned model on each board (`dynfix compress --prune-target T",
            "--prune-multiple TM`): a layer's cycles fall only when its number of groups",
            "does, so the channels that would not take a whole group off are kept, and the",
            "target takes whole groups instead. Per family the channels pruned (in the",
            "sweep table's order); agreement against the unpruned float model; cycles",
            "without -> with the rounding, on the original's engine and on the engine the",
            "fit chooses for each pruned model (the rounded model's rows quantized to",
            "8 bits by `greedy` like the others).", "",
            *md_table(["model", "target", "board", "tm", "MACs (prune s)", "pruned",
                       "float agreement", "8-bit agreement",
                       "cycles on the original's engine", "fit's engine cycles"], tiles), "",
            f"## Per layer at {100 * args.detail:g} % (`response`)", "",
            "Channels, sparsity (share of the layer's weights removed), MACs, weights, and",
            "cycles on the unpruned model's engine before -> after (a layer the engine",
            "fuses into another's group shows 0).", "",
            *md_table(["model", "layer", "op", "outputs", "inputs", "sparsity", "MACs",
                       "weights", *(f"{BOARDS[b]} cycles" for b in boards)], per_layer)]
    write_result("pruning.md", text)


if __name__ == "__main__":
    main()
