"""The paper's design point: VGG16 on the engine's analytic cycle model at 780 multipliers,
150 MHz, 16 bit, with an external-memory roofline per layer.

VGG16 is built with ``onnx.helper`` from the published layer list (13 conv 3x3 pad 1 + ReLU,
5 max-pools, 3 FC, 224x224x3 input); its weights are zeros in a sparse external-data file, so
nothing is downloaded and nothing large is held in memory. The ONNX file goes through
dynfix's own loader and the compiler's shape-only path (:func:`dynfix.hw.compiler.plan_model`);
cycles come from :func:`dynfix.hw.cycle_model.layer_cycles`, the model item 2
(``bench/engine_efficiency.py``) checks against RTL simulation.

Writes ``bench/results/paper_vgg16.md`` and ``paper_vgg16.png``.
Run: ``.venv/bin/python bench/paper_vgg16.py`` (a few seconds).
"""

from __future__ import annotations

import copy
import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table, pyplot, save_fig, write_result  # noqa: E402

from dynfix.hw.compiler import LayerPlan, im2col_first, loop_counts, plan_groups  # noqa: E402
from dynfix.hw.config import EngineConfig  # noqa: E402
from dynfix.hw.cycle_model import issue_cycles, layer_cycles  # noqa: E402
from dynfix.quant.load import load_model  # noqa: E402

#: The paper's budget and figures (docs: /work/shared/reference/method.md section 5).
MULTIPLIERS = 780
F_CLK = 150e6
BYTES = 2                               # 16-bit data and weights
PAPER_CONV_GOPS = 187.8
PAPER_EFF = PAPER_CONV_GOPS / (MULTIPLIERS * 2 * F_CLK / 1e9)   # about 0.80, derived
PAPER_WHOLE_GOPS = 137.0                # VGG16-SVD, whole network
#: External memory: ZC706 PS DDR3 as the paper's design sees it.
DDR_BYTES_S = 4.2e9
#: Usable on-chip buffers assumed for the roofline (each is ping-ponged, so the BRAM cost is
#: twice: 2 x (512 + 512) KiB = 2 MiB of the XC7Z045's 2.4 MB).
BUF_W = 512 * 1024
BUF_IN = 512 * 1024
KS = (1, 2, 3)

#: VGG16 (configuration D of Simonyan and Zisserman): output channels per conv, "M" = pool.
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"]
FC = [4096, 4096, 1000]


def vgg16_onnx(folder: Path) -> Path:
    """Write ``vgg16.onnx`` with its (all-zero) weights in a sparse ``vgg16.bin``."""
    nodes, inits, offset = [], [], 0

    def tensor(name: str, dims: list[int]) -> str:
        nonlocal offset
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims,
                        data_location=TensorProto.EXTERNAL)
        size = 4 * math.prod(dims)
        for k, v in (("location", "vgg16.bin"), ("offset", str(offset)),
                     ("length", str(size))):
            t.external_data.add(key=k, value=v)
        inits.append(t)
        offset += size
        return name

    x, c, block, idx = "input", 3, 1, 1
    for item in VGG16:
        if item == "M":
            y = f"pool{block}"
            nodes.append(helper.make_node("MaxPool", [x], [y], y, kernel_shape=[2, 2],
                                          strides=[2, 2]))
            block, idx = block + 1, 1
        else:
            y = f"conv{block}_{idx}"
            nodes.append(helper.make_node(
                "Conv", [x, tensor(f"{y}.w", [item, c, 3, 3]), tensor(f"{y}.b", [item])], [y],
                y, kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("Relu", [y], [f"{y}_relu"], f"{y}_relu"))
            y, c, idx = f"{y}_relu", item, idx + 1
        x = y
    nodes.append(helper.make_node("Flatten", [x], ["flatten"], "flatten", axis=1))
    x, f = "flatten", c * 7 * 7
    for i, m in enumerate(FC, start=6):
        y = f"fc{i}"
        nodes.append(helper.make_node("Gemm", [x, tensor(f"{y}.w", [m, f]),
                                               tensor(f"{y}.b", [m])], [y], y, transB=1))
        x, f = y, m
        if i < 8:
            nodes.append(helper.make_node("Relu", [y], [f"{y}_relu"], f"{y}_relu"))
            x = f"{y}_relu"
    nodes.append(helper.make_node("Softmax", [x], ["prob"], "prob", axis=1))
    graph = helper.make_graph(
        nodes, "vgg16", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                       [1, 3, 224, 224])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1000])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="dynfix-bench")
    with open(folder / "vgg16.bin", "wb") as fh:
        fh.truncate(offset)                 # sparse: zeros, no disk or memory used
    path = folder / "vgg16.onnx"
    onnx.save(model, str(path))
    return path


def load_plans() -> list[LayerPlan]:
    """VGG16's engine groups (conv + ReLU (+ pool), FC + ReLU) through dynfix's loader."""
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(str(vgg16_onnx(Path(tmp))))
        plans, _ = plan_groups(model)
    return plans


@dataclass
class LayerFigures:
    name: str
    kind: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    macs: int
    t_in: int
    n_mg: int
    cycles: int
    traffic: int            # bytes to and from external memory
    strategy: str           # which operand stays on chip

    @property
    def t_compute(self) -> float:
        return self.cycles / F_CLK

    @property
    def t_memory(self) -> float:
        return self.traffic / DDR_BYTES_S

    @property
    def seconds(self) -> float:
        """Compute and transfers overlap (ping-pong buffers): the slower one sets the pace."""
        return max(self.t_compute, self.t_memory)

    @property
    def gops(self) -> float:
        return 2 * self.macs / self.seconds / 1e9


def traffic(p: LayerPlan) -> tuple[int, str]:
    """External-memory bytes of one layer: weights (with biases), input and output maps,
    each at 16 bits, with the cheaper of two tilings.

    * weights on chip: the weights are loaded once, in chunks of ``BUF_W``; the input map is
      streamed once per chunk;
    * input on chip: the input map is loaded once, in row bands of ``BUF_IN`` (each band
      re-reads the kh - 1 halo rows above it); the weights are streamed once per band.

    The output map (after the fused pool) is written once.
    """
    c, h, w = p.in_shape
    m = p.out_shape[0]
    kh, kw = p.kernel
    wbytes = (m * c * kh * kw + m) * BYTES
    ibytes = c * h * w * BYTES
    obytes = math.prod(p.out_shape) * BYTES
    w_passes = math.ceil(wbytes / BUF_W)
    bands = math.ceil(ibytes / BUF_IN)
    halo = (bands - 1) * (kh - 1) * w * c * BYTES if p.kind == "conv" else 0
    a = wbytes + ibytes * w_passes + obytes
    b = ibytes + halo + wbytes * bands + obytes
    return (a, f"weights ({w_passes} chunk{'s' * (w_passes > 1)})") if a <= b else \
        (b, f"input ({bands} band{'s' * (bands > 1)})")


def figures(plans: list[LayerPlan], cfg: EngineConfig) -> list[LayerFigures]:
    out = []
    for p in plans:
        p.entry = loop_counts(p, cfg)
        tb, strategy = traffic(p)
        out.append(LayerFigures(p.name, p.kind, p.in_shape, p.out_shape, p.macs,
                                p.entry["t_in"], p.entry["n_mg"], layer_cycles(cfg, p), tb,
                                strategy))
    return out


def conv_gops(figs: list[LayerFigures]) -> float:
    """CONV average: all conv ops over all conv time (the paper's definition of an average
    over the conv layers of one image)."""
    conv = [f for f in figs if f.kind == "conv"]
    return 2 * sum(f.macs for f in conv) / sum(f.seconds for f in conv) / 1e9


def candidates(limit: int):
    """Every engine within ``limit`` multipliers: each (lanes, tm) pair (``k`` only names
    lanes, so ``k = 1, tn = lanes``), with and without im2col for the first conv."""
    for lanes in range(1, limit + 1):
        for tm in range(1, limit // lanes + 1):
            for im2col in (0, 1):
                yield EngineConfig(tn=lanes, tm=tm, im2col=im2col)


def conv_plans(plans: list[LayerPlan], cfg: EngineConfig) -> list[LayerPlan]:
    """The conv groups as ``cfg`` runs them: with ``im2col`` (when it pays) the host streams
    conv1_1's 3x3x3 windows and the engine sees a 1x1 conv over 27 channels."""
    conv = [copy.copy(p) for p in plans if p.kind == "conv"]
    if cfg.im2col:
        im2col_first(conv[0], cfg.lanes)
    return conv


def best(plans: list[LayerPlan], n: int = 6, im2col: int | None = None):
    """The ``n`` configs with the highest CONV GOP/s (ties: fewer multipliers, no im2col);
    ``im2col`` 0 or 1 restricts the search to that mode."""
    scored = [(conv_gops(figures(conv_plans(plans, cfg), cfg)), cfg)
              for cfg in candidates(MULTIPLIERS) if im2col in (None, cfg.im2col)]
    scored.sort(key=lambda s: (-round(s[0], 9), s[1].multipliers, s[1].im2col))
    return scored[:n]


def cfg_text(cfg: EngineConfig) -> str:
    return f"tn={cfg.tn} tm={cfg.tm}" + (" im2col" if cfg.im2col else "")


def layer_rows(figs: list[LayerFigures], cfg: EngineConfig) -> list[list]:
    rows = []
    for f in figs:
        util = f.macs / (f.cycles * cfg.multipliers)
        rows.append([
            f.name, "x".join(map(str, f.in_shape)), "x".join(map(str, f.out_shape)),
            f"{f.macs / 1e6:.1f}", f.t_in, f.n_mg, f"{f.cycles:,}", f"{100 * util:.1f}",
            f"{1e3 * f.t_compute:.2f}", f"{f.traffic / 1e6:.2f}", f.strategy,
            f"{1e3 * f.t_memory:.2f}", "memory" if f.t_memory > f.t_compute else "compute",
            f"{f.gops:.1f}"])
    return rows


HEADERS = ["layer", "in (CxHxW)", "out (after pool)", "MMAC", "t_in", "n_mg", "cycles",
           "MAC util. %", "compute ms", "traffic MB", "on chip", "memory ms", "bound",
           "GOP/s"]


def run() -> dict:
    plans = load_plans()
    top = best(plans)
    plain = best(plans, n=3, im2col=0)
    gops, cfg = top[0]
    conv = figures(conv_plans(plans, cfg), cfg)
    fc = figures([p for p in plans if p.kind == "linear"], cfg)
    # Where the conv cycles go: useful MACs, lanes and tm rows left idle by channel counts
    # that are not multiples of them, and per-layer fetch, drain and write-back gaps.
    ideal = sum(f.macs for f in conv) / cfg.multipliers
    issue = sum(issue_cycles(cfg, p) for p in conv_plans(plans, cfg)
                if not setattr(p, "entry", loop_counts(p, cfg)))
    total = sum(f.cycles for f in conv)
    return {"cfg": cfg, "gops": gops, "figs": conv + fc, "conv": conv, "fc": fc, "top": top,
            "plain": plain, "split": (ideal / total, (issue - ideal) / total,
                                      (total - issue) / total)}


def ulx3s_rows() -> list[str]:
    """The ULX3S beside the paper's Zynq: VGG16-SVD at 8/4 bits with its weights and maps in
    the board's SDRAM (``bench/vgg16_ulx3s.py``'s ``vgg16_ulx3s.json``), if it was run."""
    path = Path(__file__).resolve().parent / "results" / "vgg16_ulx3s.json"
    if not path.exists():
        return []
    u = json.loads(path.read_text())
    parts = "; ".join(f"{k}: {'bit-exact' if v['bit_exact'] else 'MISMATCHES'}, "
                      f"{v['cycles']:,} cycles simulated, model {v['model']:,}"
                      for k, v in u["parts"].items())
    return [
        "## The ULX3S (weights and maps in SDRAM) beside the paper's Zynq",
        "",
        *md_table(["", "ULX3S (ECP5-85F, 32 MB SDR SDRAM, 16-bit)", "paper (XC7Z045, DDR3)"],
                  [["network", "VGG16-SVD, 8/4 bits", "VGG16-SVD, 8/4 bits (16-bit board)"],
                   ["engine", f"{u['engine']} ({u['products']} products)",
                    "780 DSP multipliers"],
                   ["cycles per image", f"{u['cycles_per_image']:,} (cycle model, SDRAM "
                    f"bandwidth per layer)", ""],
                   ["whole network", f"{u['gops']:.1f} GOP/s at an assumed "
                    f"{u['clock_mhz_assumed']:.0f} MHz ({u['latency_ms']:.0f} ms)",
                    f"{PAPER_WHOLE_GOPS} GOP/s (4.45 frames/s) at 150 MHz"],
                   ["built path in simulation", parts, ""]]),
        "",
        "From `vgg16_ulx3s.md` (`bench/vgg16_ulx3s.py`), where every layer is listed.",
        "",
    ]


def report(r: dict) -> list[str]:
    cfg, conv, fc, figs = r["cfg"], r["conv"], r["fc"], r["figs"]
    peak_budget = MULTIPLIERS * 2 * F_CLK / 1e9
    peak_cfg = cfg.multipliers * 2 * F_CLK / 1e9
    conv_macs = sum(f.macs for f in conv)
    conv_s = sum(f.seconds for f in conv)
    conv_compute = sum(f.t_compute for f in conv)
    all_s = sum(f.seconds for f in figs)
    all_macs = sum(f.macs for f in figs)
    mean_layer = sum(f.gops for f in conv) / len(conv)
    mem_conv = [f for f in conv if f.t_memory > f.t_compute]
    verdict = ("beats" if r["gops"] >= PAPER_CONV_GOPS else "is below")
    lines = [
        "# The paper's design point: VGG16 at 780 multipliers, 150 MHz, 16 bit",
        "",
        "Generated by `bench/paper_vgg16.py`. VGG16 (13 conv 3x3 pad 1 + ReLU, 5 max-pools,",
        "3 FC; 224x224x3) is built with `onnx.helper` from the published layer list (zero",
        "weights, nothing downloaded), loaded by dynfix's ONNX loader and planned by the",
        "compiler's shape-only path (`plan_model`/`loop_counts`). Cycles per layer are the",
        "engine's analytic cycle model (`hw/cycle_model.py`: one cycle per output-channel",
        "group x conv pixel x kernel tap x input word, plus fetch and pipeline drain), which",
        "`engine_efficiency.md` checks against RTL simulation. One op = one multiply or one",
        "add (MAC = 2 ops); peak = multipliers x 2 x f.",
        "",
        "## Result",
        "",
        *md_table(["", "this engine", "paper (Qiu et al. 2016)"], [
            ["engine", f"{cfg_text(cfg)}: lanes = {cfg.lanes}, {cfg.multipliers} multipliers",
             "780 DSP multipliers (secondary source)"],
            ["clock, precision", "150 MHz, 16 bit (analytic)", "150 MHz, 16 bit (measured)"],
            ["**CONV average GOP/s** (13 conv layers)", f"**{r['gops']:.1f}**",
             f"**{PAPER_CONV_GOPS}**"],
            ["ratio to the paper", f"{r['gops'] / PAPER_CONV_GOPS:.3f}", "1"],
            ["efficiency vs the 780-multiplier peak (234 GOP/s)",
             f"{100 * r['gops'] / peak_budget:.1f} %", f"{100 * PAPER_EFF:.1f} % (derived)"],
            ["efficiency vs this engine's own peak", f"{100 * r['gops'] / peak_cfg:.1f} % "
             f"of {peak_cfg:.1f} GOP/s", ""],
            ["conv time per image", f"{1e3 * conv_s:.1f} ms (compute alone "
             f"{1e3 * conv_compute:.1f} ms)", f"{1e3 * 2 * conv_macs / 1e9 / PAPER_CONV_GOPS:.1f}"
             " ms (implied)"],
            ["mean of the 13 per-layer GOP/s", f"{mean_layer:.1f}", ""],
            ["whole network (conv + FC), GOP/s", f"{2 * all_macs / all_s / 1e9:.1f} "
             f"({1 / all_s:.2f} frames/s), plain VGG16", f"{PAPER_WHOLE_GOPS} (4.45 frames/s),"
             " VGG16-SVD"],
        ]),
        "",
        f"The CONV average is all conv ops of one image over the conv time "
        f"(2 x {conv_macs / 1e9:.2f} GMAC / {1e3 * conv_s:.1f} ms);",
        f"the engine {verdict} the paper's 187.8 GOP/s by "
        f"{abs(r['gops'] / PAPER_CONV_GOPS - 1) * 100:.1f} %.",
        "",
        *ulx3s_rows(),
        "## Where the cycles go",
        "",
        "The configuration is the best of every (lanes, tm) pair within 780 multipliers, with",
        "and without im2col for conv1_1 (tables below). The write-back packs `tm`-channel",
        "groups across map words, so `tm` and `lanes` are free (`hw/write_back.py`); im2col",
        "is the engine's mode for a thin first layer: the host streams conv1_1's 3x3x3",
        "windows and the engine runs a 1x1 conv over 27 channels (9x the input traffic of",
        "that layer, inside the roofline below).",
        "",
        f"Of the {cfg.multipliers} multipliers' conv cycles, "
        f"**{100 * r['split'][0]:.1f} %** do useful MACs; "
        f"{100 * r['split'][1]:.1f} % are lanes and output rows left idle",
        f"because a layer's channel count is not a multiple of lanes = {cfg.lanes} or "
        f"tm = {cfg.tm} (64 channels fill",
        f"{math.ceil(64 / cfg.lanes)} x {cfg.lanes} lanes and {math.ceil(64 / cfg.tm)} x "
        f"{cfg.tm} output rows; conv1_1's 27 window values fill "
        f"{math.ceil(27 / cfg.lanes)} x {cfg.lanes} lanes),",
        f"and {100 * r['split'][2]:.2f} % are per-layer program fetch, pipeline drain and "
        "write-back gaps.",
        f"Without im2col the best engine is {cfg_text(r['plain'][0][1])} at "
        f"{r['plain'][0][0]:.1f} GOP/s.",
        "",
        *([f"The external memory limits {', '.join(f.name for f in mem_conv)} (memory above "
           "compute in the table below), and",
           "the FC layers, whose weights are read once per image."] if mem_conv else
          ["The external memory does not limit any conv layer (the memory column is below the",
           "compute column); it limits the FC layers, whose weights are read once per image."]),
        "",
        "## Roofline assumptions",
        "",
        f"- External memory: ZC706 DDR3 at {DDR_BYTES_S / 1e9:.1f} GB/s, all of it for this "
        "engine; transfers",
        "  overlap compute (ping-pong buffers), so a layer takes max(compute, memory).",
        "- Traffic per layer at 16 bits: weights and biases, the input map and the output map",
        "  (after the fused pool). Two tilings, the cheaper is taken: *weights on chip* (loaded",
        f"  once in chunks of {BUF_W // 1024} KiB, input streamed once per chunk) or *input on "
        "chip* (loaded",
        f"  once in row bands of {BUF_IN // 1024} KiB with a (kh-1)-row halo, weights streamed "
        "once per band).",
        "  The output is written once.",
        f"- On-chip buffers: {BUF_W // 1024} KiB of weights + {BUF_IN // 1024} KiB of input, "
        "each ping-ponged",
        "  (2 MiB of BRAM; the XC7Z045 has 2.4 MB), plus a line buffer. This is",
        "  the tiled engine the roofline describes; the engine built today keeps every map and",
        "  weight on chip, which VGG16 does not fit.",
        "",
        "## Conv layers",
        "",
        *md_table(HEADERS, layer_rows(conv, cfg)),
        "",
        "`t_in`: input words per pixel (ceil(C / lanes)); `n_mg`: output-channel groups",
        "(ceil(M / tm)); MAC util.: model MACs / (cycles x multipliers); GOP/s: 2 x MACs /",
        "max(compute, memory).",
        "",
        "## FC layers (run as convolutions covering the whole input map)",
        "",
        *md_table(HEADERS, layer_rows(fc, cfg)),
        "",
        "## Best configurations within 780 multipliers",
        "",
        *md_table(["k tn tm", "lanes", "multipliers", "CONV GOP/s", "vs paper"],
                  [[cfg_text(c), c.lanes, c.multipliers, f"{g:.1f}",
                    f"{g / PAPER_CONV_GOPS:.3f}"] for g, c in r["top"]]),
        "",
        "## Best without im2col",
        "",
        *md_table(["k tn tm", "lanes", "multipliers", "CONV GOP/s", "vs paper"],
                  [[cfg_text(c), c.lanes, c.multipliers, f"{g:.1f}",
                    f"{g / PAPER_CONV_GOPS:.3f}"] for g, c in r["plain"]]),
        "",
        "![per-layer GOP/s](paper_vgg16.png)",
    ]
    return lines


def plot(r: dict) -> None:
    plt = pyplot()
    conv = r["conv"]
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = range(len(conv))
    ax.bar(xs, [f.gops for f in conv], label="per layer (roofline applied)")
    ax.axhline(r["gops"], color="C1", label=f"CONV average {r['gops']:.1f}")
    ax.axhline(PAPER_CONV_GOPS, color="k", ls="--", label=f"paper {PAPER_CONV_GOPS}")
    ax.axhline(MULTIPLIERS * 2 * F_CLK / 1e9, color="gray", ls=":",
               label="780-multiplier peak 234")
    ax.set_xticks(list(xs), [f.name for f in conv], rotation=45)
    ax.set(ylabel="GOP/s", title=f"VGG16 conv layers, {cfg_text(r['cfg'])}, 150 MHz")
    ax.legend(fontsize=8, loc="lower right")
    save_fig(fig, "paper_vgg16.png")
    plt.close(fig)


def main() -> None:
    r = run()
    write_result("paper_vgg16.md", report(r))
    plot(r)


if __name__ == "__main__":
    main()
