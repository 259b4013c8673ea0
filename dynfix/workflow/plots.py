"""The flow's plots (matplotlib, Agg backend, PNG without a timestamp)."""

from __future__ import annotations

from pathlib import Path

#: Width per layer of a per-layer plot (inches): room for a slanted display name.
LAYER_INCHES = 0.3


def _pyplot():
    # Deferred: matplotlib takes about 0.4 s to import and only the flow's last stage
    # draws; importing dynfix.workflow (the CLI's flow command) stays fast.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    _pyplot().close(fig)


def write_plots(folder: Path, rep: dict) -> list[Path]:
    """accuracy_vs_bits.png, sqnr.png and layers.png in ``folder`` (created)."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    names = [r["label"] for r in rep["layers"]]       # short names (names.display_names)
    paths = []

    sweep = rep["accuracy_vs_bits"]
    pts = sorted(sweep["points"], key=lambda p: (_bits_key(p["bits"]), p["bits"]))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    xs = range(len(pts))
    scale = 100 if sweep["unit"] == "%" else 1
    ax.plot(xs, [scale * p["value"] for p in pts], "o-", color="tab:blue",
            label="integer model")
    for x, p in zip(xs, pts):
        if p["chosen"]:
            ax.plot([x], [scale * p["value"]], "o", ms=10, mfc="none", color="tab:red",
                    label="chosen")
    if rep["accuracy"]["float"] is not None and sweep["metric"] == "accuracy":
        ax.axhline(100 * rep["accuracy"]["float"], ls="--", color="gray", label="float")
    ax.set_xticks(list(xs), [p["bits"] for p in pts])
    ax.set_xlabel("bit width (data/weights)")
    ax.set_ylabel(f"{sweep['metric']} ({sweep['unit']})")
    ax.set_title(f"{rep['model']}: {sweep['label']} vs bit width", fontsize=9)
    ax.legend(fontsize=8)
    paths.append(folder / "accuracy_vs_bits.png")
    _save(fig, paths[-1])

    fig, ax = _per_layer(plt, names)
    sq = [r["sqnr_db"] if r["sqnr_db"] is not None else 0.0 for r in rep["layers"]]
    ax.bar(names, sq, color="tab:green")
    ax.set_ylabel("SQNR (dB)")
    ax.set_title(f"{rep['model']}: per-layer SQNR at {rep['bits']} bits (calibration)",
                 fontsize=9)
    _tick_names(ax)
    paths.append(folder / "sqnr.png")
    _save(fig, paths[-1])

    fig, ax = _per_layer(plt, names)
    ax.bar(names, [r["cycles"] for r in rep["layers"]], color="tab:blue")
    ax.set_ylabel("cycles per image (simulated)")
    _tick_names(ax)
    ax2 = ax.twinx()
    ax2.plot(names, [100 * r["utilization"] for r in rep["layers"]], "o-", color="tab:red")
    ax2.set_ylabel("MAC utilization (%)", color="tab:red")
    ax2.set_ylim(0, 105)
    ax.set_title(f"{rep['model']} on {rep['board']}: cycles and utilization per layer",
                 fontsize=9)
    paths.append(folder / "layers.png")
    _save(fig, paths[-1])
    return paths


def _per_layer(plt, names: list[str]):
    """A figure with one bar per layer, wider as layers add up so that their names fit."""
    return plt.subplots(figsize=(max(5.0, 2.0 + LAYER_INCHES * len(names)), 3.2))


def _tick_names(ax) -> None:
    """Layer names slanted, each ending under its bar."""
    for label in ax.get_xticklabels():
        label.set(rotation=40, ha="right", rotation_mode="anchor")


def _bits_key(bits: str) -> int:
    try:
        return int(str(bits).split("/")[0])
    except ValueError:
        return 0
