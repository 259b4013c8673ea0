"""A sweep's results as Markdown (``results.md``) and its Pareto front as a plot
(``pareto.png``): :func:`dynfix.workflow.sweep.finish` writes both from ``results.json``."""

from __future__ import annotations

from pathlib import Path

from .report import SWEEP_METRICS


def _acc(r: dict) -> str:
    if r.get("accuracy") is None:
        return "n/a"
    unit = SWEEP_METRICS[r["metric"]][1]
    return f"{100 * r['accuracy']:.2f} %" if unit == "%" else f"{r['accuracy']:.1f} dB"


def _n(v) -> str:
    return "" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:,.2f}"


def markdown(res: dict) -> str:
    """Per board: every finished point (Pareto points marked, the chosen one in bold), then
    the failed points with their stage and reason."""
    synth = res["synth"]
    metrics = {r["metric"] for r in res["points"] if r.get("metric")}
    metric = SWEEP_METRICS[metrics.pop()][0] if len(metrics) == 1 else "accuracy"
    lines = [f"# Sweep: {res['model']}", "",
             f"Boards {', '.join(res['boards'])}; bit widths {', '.join(res['bits'])}; "
             f"{res['candidates']} engine candidate{'s' * (res['candidates'] > 1)} per board "
             f"and width"
             + (f"; nextpnr seeds {', '.join(map(str, res['seeds']))}" if synth else
                "; not synthesized")
             + f"; {res['images']} images simulated per design.", "",
             f"Latency per image: {res['latency']}. "
             + ("LUTs, FFs, DSPs, BRAMs: synthesized." if synth else
                "LUTs, FFs, DSPs, BRAMs: the fit's estimate (engine and board top).")
             + f" Accuracy: the integer model's {metric} on the whole test data (the "
             f"simulated images are bit-exact). Pareto: on the front of latency, LUTs and "
             f"accuracy; the chosen design (bold) is the fastest on it within "
             f"{res['max_drop']:g} {'dB' if 'SQNR' in metric else 'percentage points'} of "
             f"its best accuracy.", ""]
    head = ["point", "bits", "engine", *(["seed"] if synth else []), "accuracy", "cycles",
            "clock MHz", *(["Fmax MHz"] if synth else []), "latency us", "LUTs", "FFs",
            "DSPs", "BRAMs", "Pareto"]
    for board in res["boards"]:
        rows = [r for r in res["points"] if r["board"] == board and r["status"] == "ok"]
        front = set(res["pareto"].get(board, []))
        chosen = res["chosen"].get(board)
        lines += [f"## {board}", ""]
        if not rows:
            lines += ["No point finished.", ""]
            continue
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in sorted(rows, key=lambda r: (r.get("latency_us", float("inf")), r["id"])):
            cells = [r["id"], r["bits"], r["engine"], *([str(r["seed"])] if synth else []),
                     _acc(r), _n(r.get("cycles")), f"{r['clock_mhz']:g}",
                     *([_n(r.get("fmax_mhz"))] if synth else []), _n(r.get("latency_us")),
                     _n(r.get("luts")), _n(r.get("ffs")), _n(r.get("dsps")),
                     _n(r.get("brams")),
                     "chosen" if r["id"] == chosen else "yes" if r["id"] in front else ""]
            if r["id"] == chosen:
                cells = [f"**{c}**" if c else c for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    failed = [r for r in res["points"] if r["status"] != "ok"]
    if failed:
        lines += [f"## Failed points ({len(failed)})", "", "| point | stage | reason |",
                  "|---|---|---|"]
        lines += [f"| {r['id']} | {r['stage']} | {r['reason'].replace('|', '/')} |"
                  for r in failed]
        lines.append("")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> Path:
    """One panel per board: latency against LUTs for every finished point, the Pareto
    front's points coloured by bit width and labelled with their accuracy, the chosen one
    ringed."""
    from .plots import _pyplot, _save

    plt = _pyplot()
    boards = res["boards"]
    fig, axes = plt.subplots(1, len(boards), figsize=(5.2 * len(boards), 3.8), squeeze=False)
    colors = {b: f"C{i}" for i, b in enumerate(res["bits"])}
    for ax, board in zip(axes[0], boards):
        rows = [r for r in res["points"] if r["board"] == board and r["status"] == "ok"
                and "latency_us" in r]
        front = set(res["pareto"].get(board, []))
        ax.scatter([r["latency_us"] for r in rows if r["id"] not in front],
                   [r["luts"] for r in rows if r["id"] not in front], s=14, color="0.7",
                   label="dominated")
        for bits in res["bits"]:
            pts = sorted((r for r in rows if r["id"] in front and r["bits"] == bits),
                         key=lambda r: r["latency_us"])
            if pts:
                ax.scatter([r["latency_us"] for r in pts], [r["luts"] for r in pts], s=30,
                           color=colors[bits], label=f"Pareto, {bits} bits")
                for r in pts:
                    ax.annotate(_acc(r), (r["latency_us"], r["luts"]), fontsize=7,
                                xytext=(4, 3), textcoords="offset points")
        chosen = next((r for r in rows if r["id"] == res["chosen"].get(board)), None)
        if chosen is not None:
            ax.scatter([chosen["latency_us"]], [chosen["luts"]], s=160, facecolors="none",
                       edgecolors="tab:red", linewidths=1.5, label="chosen")
        ax.set_xlabel("latency per image (us)" + ("" if res["synth"] else
                                                   ", estimate at the oscillator"))
        ax.set_ylabel("LUTs" + ("" if res["synth"] else " (estimate)"))
        ax.set_title(f"{res['model']} on {board}", fontsize=9)
        if rows:
            ax.legend(fontsize=7)
    path = Path(path)
    _save(fig, path)
    return path
