"""Every board in ``boards/``: the engine chosen for the bundled digits model (8 bit), its
utilization, the clock the bitstream runs at and Fmax from synthesis (``dynfix synth``'s timing
closure on the board's PLL), images/s and GOP/s at that clock, and the multiplier peak
(products per cycle x 2 x f) of the engine and of the board's DSP blocks (two 8-bit products
per block where the family's DSP blocks take pairs, as iCE40's SB_MAC16 does).

Synthesis (yosys + nextpnr via ``dynfix.api.synth``) takes minutes per build, so it runs
only with ``--synth`` (``--synth icebreaker`` rebuilds only the boards named); its figures are
kept in ``bench/results/boards_synth.json`` and reused by later runs (the table then says which
figures come from that file) as long as the board's engine is the same.
Without any synthesis figures, the table shows the resource estimate (``hw/resources.py``)
and the board's oscillator instead.

``--bits 8/4/4`` (or any other ``--bits`` spec) quantizes the model so instead and writes
its own table (``boards_bits_8-4-4.md``; synthesis figures kept under ``BOARD 8/4/4``): with
4-bit weights the ECP5 engines take two products per MULT18X18D (``hw/ecp5_packed_mul.py``).

Writes ``bench/results/boards.md``.
Run: ``.venv/bin/python bench/boards.py [--bits SPEC] [--synth [BOARD ...]]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, md_table, write_result  # noqa: E402

from dynfix.boards.fit import board_estimate, dual_mac_fits, fit  # noqa: E402
from dynfix.boards.registry import Board, list_boards  # noqa: E402
from dynfix.errors import DynfixError  # noqa: E402
from dynfix.hw.compiler import compile_model  # noqa: E402
from dynfix.hw.config import EngineConfig  # noqa: E402
from dynfix.hw.cycle_model import estimate as cycle_estimate  # noqa: E402
from dynfix.quant.datasets import load_digits  # noqa: E402
from dynfix.quant.load import load_model  # noqa: E402
from dynfix.quant.search import search  # noqa: E402

SYNTH_CACHE = OUT / "boards_synth.json"


def choose_config(model, spec, board: Board) -> tuple[EngineConfig, str]:
    """The engine for ``board``: the fitter's choice."""
    return fit(model, spec, board).chosen.config, "boards.fit"


def resource_estimate(cfg: EngineConfig, board: Board) -> dict:
    """The resource estimate the fit used (board top included)."""
    return board_estimate(cfg, board).total.rounded()


def synthesize(board: Board, cm, model_name: str, work: Path) -> dict:
    """Generate the engine and build the board top as ``dynfix synth`` does (timing closure
    on the board's PLL); utilization, the clock the bitstream runs at, Fmax, wall time."""
    from dynfix.api import synth
    from dynfix.hw.generate import write_outputs

    folder = work / board.name
    write_outputs(cm, model_name, folder / "gen", board=board.bundled_name)
    t0 = time.perf_counter()
    r = synth(folder / "gen", board, folder / "build", check_timing=False, fit_check=False)
    return {"luts": r.luts, "ffs": r.ffs, "dsps": r.dsps, "brams": r.brams,
            "sprams": r.sprams, "clock_mhz": round(r.clock_mhz, 4), "pll": r.pll,
            "fmax_mhz": r.fmax_mhz, "target_mhz": r.target_mhz,
            "timing_met": r.timing_met, "available": r.available,
            "critical_path": r.critical_path,
            "closure": [{k: v for k, v in step.items() if k != "seconds"}
                        for step in r.closure],
            "engine": cm.config.summary(),
            "seconds": round(time.perf_counter() - t0, 1)}


def cache_key(board: str, bits: str) -> str:
    """A board's entry in the synthesis cache: its name at 8 bits, ``NAME BITS`` else."""
    return board if bits == "8" else f"{board} {bits}"


def run(synth_boards: list[str] | None, bits: str = "8") -> list[dict]:
    """Every board's row; ``synth_boards``: the boards to synthesize (empty: all, None:
    none)."""
    model = load_model("digits")
    calib, _ = load_digits("calib")
    spec = search(model, calib, bits=bits)
    cache = json.loads(SYNTH_CACHE.read_text()) if SYNTH_CACHE.exists() else {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="dynfix-bench-boards-") as tmp:
        for board in list_boards():
            cfg, source = choose_config(model, spec, board)
            cm = compile_model(model, spec, cfg)
            est = cycle_estimate(cm)
            row = {"board": board.name, "device": board.device, "cfg": cm.config,
                   "source": source, "cycles": est["cycles_per_image"], "macs": est["macs"],
                   "estimate": resource_estimate(cm.config, board), "board_obj": board,
                   "synth": None, "error": None}
            engine, key = cm.config.summary(), cache_key(board.name, bits)
            if synth_boards is not None and (not synth_boards or board.name in synth_boards):
                try:
                    cache[key] = synthesize(board, cm, model.name, Path(tmp))
                except DynfixError as e:
                    row["error"] = str(e).splitlines()[0][:200]
                    cache.pop(key, None)
            if key in cache and cache[key].get("engine") == engine:
                row["synth"] = cache[key]
            rows.append(row)
    if synth_boards is not None:
        SYNTH_CACHE.write_text(json.dumps(
            {k: {kk: vv for kk, vv in v.items() if kk != "seconds"} for k, v in
             sorted(cache.items())}, indent=2, sort_keys=True) + "\n")
    return rows


def ratio_row(r: dict) -> list | None:
    """Estimate (``hw/resources.py``, what the fit used) against the synthesized figures."""
    est, s = r["estimate"], r["synth"]
    if not (est and s):
        return None
    cells = [r["board"]]
    for key in ("luts", "ffs"):
        cells.append(f"{est[key]:,} / {s[key]:,} = {est[key] / s[key]:.2f}")
    for key in ("dsps", "brams"):
        cells.append(f"{est[key]} / {s[key]}" + (" (exact)" if est[key] == s[key] else ""))
    cells.append(s.get("critical_path", "-"))
    return cells


def report(rows: list[dict], bits: str = "8") -> list[str]:
    table, perf = [], []
    ratios = [row for row in map(ratio_row, rows) if row]
    for r in rows:
        cfg, b, s = r["cfg"], r["board_obj"], r["synth"]
        if s:
            use = {k: s[k] for k in ("luts", "ffs", "dsps", "brams")}
            avail = s.get("available") or {}
            # A build from before the PLL ran at the board's oscillator (its target).
            f_mhz = s.get("clock_mhz", s["target_mhz"])
            f_what = "PLL" if s.get("pll") else "oscillator"
            fmax = f"{s['fmax_mhz']:.2f}"
        else:
            use = r["estimate"] or {}
            avail = {"luts": b.luts, "ffs": b.ffs, "dsps": b.dsp.blocks,
                     "brams": b.bram.blocks}
            f_mhz, f_what, fmax = b.clock_mhz, "oscillator; estimate, no synthesis", "-"

        def pct(key):
            if key not in use:
                return "-"
            a = avail.get(key)
            return f"{use[key]}/{a} ({100 * use[key] / a:.0f} %)" if a else str(use[key])
        source = ("synthesis" if s else "estimate" if r["estimate"] else "-")
        if r["error"]:
            source = f"synthesis failed: {r['error']}"
        where = ([f"{2 * cfg.packed_pairs} packed"] if cfg.packed_dsp else []) + (
            [f"{cfg.lut_products} in LUTs"] if cfg.lut_products else [])
        products = f"{cfg.multipliers}" + (f" ({', '.join(where)})" if where else "")
        table.append([r["board"], r["device"], cfg.summary(),
                      products, pct("luts"), pct("ffs"), pct("dsps"), pct("brams"),
                      source])
        ips = f_mhz * 1e6 / r["cycles"]
        gops = 2 * r["macs"] * ips / 1e9
        peak = cfg.multipliers * 2 * f_mhz * 1e6 / 1e9
        per_block = 2 if dual_mac_fits(cfg, b) else 1
        dsp_peak = b.dsp.blocks * per_block * 2 * f_mhz * 1e6 / 1e9
        timing = ("met" if s["timing_met"] else "**NOT met**") if s else "-"
        perf.append([r["board"], f"{f_mhz:.2f} ({f_what})", fmax, timing,
                     f"{r['cycles']:,}", f"{ips:,.0f}", f"{gops:.4f}", f"{peak:.3f}",
                     f"{100 * gops / peak:.1f}", f"{dsp_peak:.3f}",
                     f"{100 * gops / dsp_peak:.1f}" if dsp_peak else "-"])
    return [
        "# Boards: utilization, Fmax, throughput and the multiplier peak",
        "",
        "Generated by `bench/boards.py` (`--synth` reruns yosys/nextpnr; otherwise synthesis",
        "figures come from `boards_synth.json`, written by the last `--synth` run). Model: the",
        f"bundled digits network, `--bits {bits}`"
        + (" (8-bit maps, 4-bit weights: two products per ECP5 MULT18X18D, `packed` in the "
           "engine, `hw/ecp5_packed_mul.py`)" if bits == "8/4/4" else "")
        + ". Engine: chosen per board by `dynfix.boards.fit`",
        "(the fastest engine whose resource estimate fits) when available. Utilization",
        "includes the board top (UART host link, LEDs).",
        "",
        *md_table(["board", "device", "engine", "multipliers", "LUTs", "FFs", "DSPs", "BRAMs",
                   "figures from"], table),
        "",
        "Resource estimate (what the fit decides with) against synthesis, and the critical",
        "path nextpnr reports (it sets the Fmax):",
        "",
        *md_table(["board", "LUTs est / actual", "FFs est / actual", "DSPs est / actual",
                   "BRAMs est / actual", "critical path"], ratios),
        "",
        "Throughput at the clock the bitstream runs at (`dynfix synth`'s timing closure: the",
        "PLL's fastest setting that met timing; Fmax is what nextpnr reported for that build):",
        "images/s = f / cycles per image (cycle",
        "model: compute + loading the image + streaming the outputs; the 115200-baud UART to a",
        "host is not counted), GOP/s = 2 x MACs x images/s. Engine peak = engine multipliers",
        "(products per cycle) x 2 x f; board peak = the board's DSP blocks x products per block",
        "x 2 x f (the hard multiplier limit; an iCE40 SB_MAC16 takes two 8-bit products in",
        "its dual 8x8 mode, `hw/ice40_dual_mac.py`); an ECP5 engine with products in LUTs",
        "(`+N lut` in the engine, `hw/lut_mul.py`) or packed products (two per MULT18X18D,",
        "`hw/ecp5_packed_mul.py`) can go past it.",
        "",
        *md_table(["board", "f (MHz)", "Fmax MHz", "timing", "cycles/image", "images/s",
                   "GOP/s", "engine peak GOP/s", "% of engine peak", "board DSP peak GOP/s",
                   "% of board peak"], perf),
        "",
        "Below 100 % of the engine peak: lanes left empty where a map has fewer channels",
        "than `lanes` (the digits input has 1 channel), partly filled `tm` groups, the image",
        "load and output stream, and per-layer fetch/drain cycles. See `engine_efficiency.md`",
        "for VGG-style layers and `paper_vgg16.md` for the paper's design point.",
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--synth", nargs="*", metavar="BOARD",
                    help="run synthesis (minutes per board): of the boards named, else all")
    ap.add_argument("--bits", default="8", help="quantize the model so (e.g. 8/4/4); a table "
                    "of its own: boards_bits_SPEC.md")
    a = ap.parse_args(argv)
    name = "boards.md" if a.bits == "8" else f"boards_bits_{a.bits.replace('/', '-')}.md"
    write_result(name, report(run(a.synth, a.bits), a.bits))


if __name__ == "__main__":
    main()
