"""The flow's reports: ``report.json`` (plain data, deterministic: no paths outside the
output folder, no times) and the summary table shown on the terminal and in ``summary.md``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dynfix.boards.fit import board_estimate
from dynfix.quant.load import BUNDLED

RESOURCES = (("luts", "LUTs"), ("ffs", "FFs"), ("dsps", "DSPs"), ("brams", "BRAMs"),
             ("sprams", "SPRAMs"))
#: How the summary names a simulator.
SIM_TITLES = {"icarus": "Icarus", "verilator": "Verilator"}
#: The bit-width sweep's measures: key -> (label, unit).
SWEEP_METRICS = {"accuracy": ("top-1 accuracy", "%"),
                 "agreement": ("top-1 agreement with the float model", "%"),
                 "sqnr": ("output SQNR against the float model", "dB")}


def sweep_metric(acc: dict) -> str:
    """The sweep's measure: top-1 accuracy with labels, top-1 agreement without, output
    SQNR for an output that is not classes (``acc``: the flow's accuracies)."""
    if acc["output"] != "classes":
        return "sqnr"
    return "accuracy" if acc["float"] is not None else "agreement"


def _r(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def board_totals(board) -> dict[str, int]:
    return {"luts": board.luts, "ffs": board.ffs, "dsps": board.dsp.blocks,
            "brams": board.bram.blocks,
            **({"sprams": board.spram.blocks} if board.spram is not None else {})}


def resources(board, config, syn) -> dict[str, Any]:
    """Used/available per resource: nextpnr's after synthesis, else the analytic estimate."""
    totals = board_totals(board)
    if syn is not None:
        used = {"luts": syn.luts, "ffs": syn.ffs, "dsps": syn.dsps, "brams": syn.brams,
                "sprams": syn.sprams}
        used = {k: v for k, v in used.items() if k in totals}
        avail = {k: syn.available.get(k) or totals[k] for k in totals}
        source = "nextpnr (synthesized)"
    else:
        used = {k: v for k, v in board_estimate(config, board).total.rounded().items()
                if k in totals}
        avail, source = totals, "estimate (not synthesized)"
    return {"source": source, "used": {k: int(v) for k, v in used.items()},
            "available": {k: int(v) for k, v in avail.items()}}


def build_report(name: str, labels: dict[str, str], board, opts, data: str, q, g, s, syn,
                 acc: dict, sweep: list[dict], simulator: str) -> dict[str, Any]:
    """``report.json``: ``name`` is the model's name as shown, ``labels`` every layer's
    display name (names.display_names; each layer row keeps its full ``name`` too),
    ``simulator`` the one the images ran under."""
    est = g.estimate
    mults = g.multipliers
    compute = s.mean_cycles
    per_image = compute + est["load_cycles"] + est["unload_cycles"]
    if syn is not None:
        mhz = float(syn.clock_mhz or syn.target_mhz)
        source = (f"the bitstream's clock ({'PLL' if syn.pll else 'oscillator'}); timing "
                  f"{'met' if syn.timing_met else 'NOT met'}, Fmax {syn.fmax_mhz:.2f} MHz")
    else:
        mhz, source = float(board.target_mhz), "board clock; estimate, not synthesized"
    ips = mhz * 1e6 / per_image if per_image else 0.0
    formats = q.spec.layers
    layers = []
    for i, row in enumerate(est["layers"]):
        sim = float(sum(c[i] for c in s.layer_cycles) / len(s.layer_cycles))
        f = formats.get(row["name"])
        layers.append({
            "name": row["name"], "label": labels.get(row["name"], row["name"]),
            "kind": row["kind"], "macs": int(row["macs"]),
            "cycles": _r(sim, 1), "cycles_estimate": int(row["cycles"]),
            "utilization": _r(row["macs"] / (sim * mults) if sim else 0.0),
            "bw_w": f and f.bw_w, "bw_x": f and f.bw_x,
            "sqnr_db": f and _r(f.sqnr_db, 2), "saturated": f and f.saturated})
    files = {"quant": "quant.yaml", "verilog": f"hw/{g.verilog.name}",
             "program": "hw/program.hex", "weights": "hw/weights.hex",
             "biases": "hw/biases.hex", "engine_report": "hw/report.json",
             "report": "report.json", "summary": "summary.md",
             "plots": ["plots/accuracy_vs_bits.png", "plots/sqnr.png", "plots/layers.png"]}
    if q.spec.params:                   # bias correction / adaptive rounding (Q.yaml names it)
        files["quant_params"] = "quant.params.npz"
    timing: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if syn is not None:
        files["bitstream"] = f"synth/{Path(syn.bitstream).name}"
        timing = {"clock_mhz": _r(mhz, 6), "fmax_mhz": _r(syn.fmax_mhz, 2),
                  "target_mhz": syn.target_mhz, "met": bool(syn.timing_met),
                  "pll": dict(syn.pll) or None, "builds": max(len(syn.closure), 1)}
        if syn.flash_image:             # weights in SPRAM: loaded from flash at power-up
            files["flash_image"] = f"synth/{Path(syn.flash_image).name}"
            extra["program"] = list(syn.program)
        if syn.flash:                   # Huffman-coded: the load's bytes and cycles
            timing["flash"] = dict(syn.flash)
    n = s.n
    classes = acc["output"] == "classes"
    return {
        "model": name, "board": board.name, "bits": str(opts.bits),
        "method": q.spec.method, "data": data,
        "accuracy": {"float": _r(acc["float"]), "integer": _r(acc["integer"]),
                     "output": acc["output"], "agreement": _r(acc["agreement"]),
                     "sqnr_db": _r(acc["sqnr_db"], 2), "test_images": acc["n"],
                     "integer_simulated": _r(s.int_accuracy if classes else None),
                     "hardware": _r(s.hw_accuracy if classes else None),
                     "simulated_images": n},
        "simulation": {"simulator": simulator, "requested": opts.sim, "images": n,
                       "mismatches": s.mismatches},
        "performance": {
            "cycles_per_image": _r(per_image, 1), "compute_cycles": _r(compute, 1),
            "load_cycles": int(est["load_cycles"]), "unload_cycles": int(est["unload_cycles"]),
            "cycles_estimate": int(est["cycles_per_image"]),
            "clock_mhz": _r(mhz, 2), "clock_source": source,
            "images_per_s": _r(ips, 1),
            "images_per_s_board_clock": _r(board.target_mhz * 1e6 / per_image, 1),
            "board_clock_mhz": board.target_mhz, "gops": _r(2 * est["macs"] * ips / 1e9, 5),
            "macs_per_image": int(est["macs"]), "multipliers": mults,
            "mac_utilization": _r(est["macs"] / (compute * mults) if compute else 0.0)},
        "engine": dict({k: g.engine[k] for k in ("tn", "tm", "im2col", "multiplier",
                                                 "w_spram", "m_spram", "multipliers",
                                                 "dsp_blocks", "data_bits", "weight_bits",
                                                 "acc_bits")},
                       summary=g.config.summary(),
                       limited_by=g.fit.limit if g.fit is not None else None),
        "resources": resources(board, g.config, syn),
        "timing": timing,
        "layers": layers,
        "accuracy_vs_bits": {"metric": sweep_metric(acc),
                             "label": SWEEP_METRICS[sweep_metric(acc)][0],
                             "unit": SWEEP_METRICS[sweep_metric(acc)][1],
                             "points": [dict(r, value=_r(r["value"])) for r in sweep]},
        "files": files,
        **extra,
    }


def _pct(v: float | None, why: str = "no labels") -> str:
    return f"n/a ({why})" if v is None else f"{100 * v:.2f} %"


def rows(rep: dict) -> list[tuple[str, str]]:
    """The summary as (label, value) pairs."""
    a, p, sim, res = rep["accuracy"], rep["performance"], rep["simulation"], rep["resources"]
    n, t = a["simulated_images"], a["test_images"]
    use = []
    for key, name in RESOURCES:
        if key in res["used"] and (key != "sprams" or res["used"][key]):
            u, av = res["used"][key], res["available"].get(key) or 0
            use.append(f"{name} {u:,}/{av:,}" + (f" ({100 * u / av:.0f} %)" if av else ""))
    why = "no labels" if a.get("output", "classes") == "classes" else "output is not classes"
    fid = ""
    if a.get("sqnr_db") is not None:
        agree = f"agreement {100 * a['agreement']:.2f} %, " if why == "no labels" else ""
        fid = f"; vs float: {agree}output SQNR {a['sqnr_db']:.1f} dB"
    out = [
        ("float model", f"{_pct(a['float'], why)} on {t} test images"),
        ("integer model", f"{_pct(a['integer'], why)} on {t} test images; "
                          f"{_pct(a['integer_simulated'], why)} on the {n} simulated{fid}"),
        (f"hardware ({SIM_TITLES[sim['simulator']]})",
         f"{_pct(a['hardware'], why)} on {n} images; "
         f"{sim['mismatches']} mismatches with the integer model"),
        ("cycles per image", f"{p['cycles_per_image']:,.0f} ({p['compute_cycles']:,.0f} "
                             f"compute, simulated, + {p['load_cycles']} in + "
                             f"{p['unload_cycles']} out; model {p['cycles_estimate']:,})"),
        ("throughput", f"{p['images_per_s']:,.1f} images/s at {p['clock_mhz']:g} MHz "
                       f"({p['clock_source']})" + (
                           f"; {p['images_per_s_board_clock']:,.1f} at the board clock "
                           f"{p['board_clock_mhz']:g} MHz" if rep["timing"] else "")),
        ("compute", f"{p['gops']:.4f} GOP/s, MAC utilization "
                    f"{100 * p['mac_utilization']:.1f} % of {p['multipliers']} multipliers"),
        ("resources", f"{', '.join(use) or 'n/a'} [{res['source']}]"),
    ]
    if rep["timing"]:
        tm = rep["timing"]
        clock = (f"bitstream at {tm['clock_mhz']:g} MHz "
                 f"({'PLL' if tm.get('pll') else 'oscillator'}), " if "clock_mhz" in tm else "")
        out.append(("timing", f"{clock}Fmax {tm['fmax_mhz']:.2f} MHz, target "
                              f"{tm['target_mhz']:g} MHz: {'met' if tm['met'] else 'NOT MET'}"))
    if rep.get("program"):
        out.append(("program (in synth/)", "; ".join(rep["program"])))
    return out


def summary_table(rep: dict, folder: str | None = None) -> str:
    """The terminal summary (``folder``: where the files are, shown last)."""
    head = (f"dynfix flow: {rep['model']} on {rep['board']}, {rep['bits']}-bit "
            f"({rep['method']}), data {rep['data']}")
    lines = [head, "-" * len(head)]
    items = rows(rep)
    if folder is not None:
        f = rep["files"]
        items.append(("files", f"{folder}/  summary.md report.json quant.yaml hw/ plots/"
                               + (f" {f['bitstream']}" if "bitstream" in f else "")))
    width = max(len(k) for k, _ in items)
    lines += [f"{k:<{width}}  {v}" for k, v in items]
    return "\n".join(lines)


def summary_markdown(rep: dict, table: str | None = None) -> str:
    """``summary.md``: the summary, per-layer table, plots and file list."""
    md = [f"# dynfix flow: {rep['model']} on {rep['board']}", "",
          f"{rep['bits']}-bit ({rep['method']}), data `{rep['data']}`, engine "
          f"{rep['engine']['summary']} ({rep['engine']['multipliers']} multipliers).", "",
          "| | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in rows(rep)]
    md += ["", "## Layers", "",
           "| layer | kind | MACs | cycles (sim) | cycles (model) | MAC util. | w bits | "
           "x bits | SQNR dB | saturated |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rep["layers"]:
        md.append(f"| {r['label']} | {r['kind']} | {r['macs']:,} | {r['cycles']:,.0f} | "
                  f"{r['cycles_estimate']:,} | {100 * r['utilization']:.1f} % | {r['bw_w']} | "
                  f"{r['bw_x']} | {r['sqnr_db']} | {r['saturated']} |")
    if any(r["label"] != r["name"] for r in rep["layers"]):
        md += ["", "Layer names are shortened here and in the plots; `report.json` and "
                   "`quant.yaml` have them in full."]
    sweep = rep["accuracy_vs_bits"]
    title = sweep["label"][:1].upper() + sweep["label"][1:]
    md += ["", f"## {title} vs bit width (integer model)", "",
           f"Measure: {sweep['label']} ({sweep['metric']}) on the test data.", "",
           "| bits | value |", "|---|---:|"]
    md += [f"| {p['bits']}{' (chosen)' if p['chosen'] else ''} | {_value(p['value'], sweep)} |"
           for p in sweep["points"]]
    md += ["", "## Plots", ""]
    md += [f"![{Path(p).stem}]({p})" for p in rep["files"]["plots"]]
    md += ["", "## Files", ""]
    for key, v in rep["files"].items():
        md += [f"- {key}: " + ", ".join(f"`{x}`" for x in (v if isinstance(v, list) else [v]))]
    md += ["", "Reproduce: `dynfix flow " + " ".join(_args(rep)) + "`", ""]
    return "\n".join(md)


def _value(v: float | None, sweep: dict) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.2f} %" if sweep["unit"] == "%" else f"{v:.2f} dB"


def _args(rep: dict) -> list[str]:
    args = [rep["model"] if rep["model"] in BUNDLED else "MODEL", "--board", rep["board"],
            "--bits", rep["bits"], "--images", str(rep["simulation"]["images"])]
    if rep["data"] != "digits":
        args += ["--data", "DATA"]
    if rep["simulation"]["requested"] != "auto":
        args += ["--sim", rep["simulation"]["requested"]]
    if rep["timing"]:
        args.append("--synth")
    return args
