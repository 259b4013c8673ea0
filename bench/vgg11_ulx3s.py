"""VGG-11 for 32 x 32 x 3 inputs on the ULX3S with its weights in the board's SDRAM.

VGG-11 (configuration A of Simonyan and Zisserman, CIFAR-sized: eight conv 3x3 pad 1 + ReLU,
five max-pools, one FC 512 -> 10) has 9.2M weights and 153M MACs: more than any board's
on-chip memory holds. The weights are seeded random (He-scaled, so maps keep their range
through the layers); calibration and test inputs are seeded random images. The fit
(``dynfix.boards.fit``) places the weights in the ULX3S's SDRAM (``bulk_store: sdram``);
the engine is generated, one input runs through its Verilog in Verilator with the SDRAM
controller and the chip model (``sim/sdram_model.v``, which fails the run on any violation
of the part's rules) against the integer model, and the report gives per layer the cycles,
the bytes moved and whether the layer is compute- or bandwidth-bound.

With ``--synth`` the engine is also built for the board (``dynfix synth``: the board top
drives the SDRAM from the PLL's phase-shifted second output and copies the weights there
from the SPI flash at power-up; timing closure on the PLL) and the report gives the
bitstream's resources, clock and latency at that clock.

Writes ``bench/results/vgg11_ulx3s.md``.
Run: ``.venv/bin/python bench/vgg11_ulx3s.py [--synth]`` (generation, a Verilator build and
about 5M simulated cycles, then with ``--synth`` two or three place-and-route runs: tens of
minutes on two cores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table, write_result  # noqa: E402

from dynfix.quant.ir import Conv2d, Flatten, Linear, MaxPool2d, Model, ReLU  # noqa: E402

#: VGG-11: output channels per conv, "M" = a 2x2 max-pool.
VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
CLASSES = 10


def conv_stack(items: list, rng: np.random.Generator) -> tuple[list, str, int]:
    """A VGG conv stack on input ``x`` (3 channels): per item a conv 3x3 pad 1 + ReLU of
    that many channels, or "M" a 2x2 max-pool; He-scaled random weights. Returns the
    layers, the last tensor's name and its channels."""
    layers, x, c, block, idx = [], "x", 3, 1, 1
    for item in items:
        if item == "M":
            y = f"pool{block}"
            layers.append(MaxPool2d(y, (x,), kernel=(2, 2), stride=(2, 2)))
            block, idx = block + 1, 1
        else:
            y = f"conv{block}_{idx}"
            w = rng.standard_normal((item, c, 3, 3)).astype(np.float32) * np.sqrt(2 / (9 * c))
            b = rng.standard_normal(item).astype(np.float32) * 0.05
            layers.append(Conv2d(y, (x,), weight=w, bias=b, pads=(1, 1, 1, 1)))
            layers.append(ReLU(f"{y}_relu", (y,)))
            y, c, idx = f"{y}_relu", item, idx + 1
        x = y
    return layers, x, c


def vgg11_model(seed: int = 0) -> Model:
    """VGG-11 for 3 x 32 x 32 inputs with seeded He-scaled random weights."""
    rng = np.random.default_rng(seed)
    layers, x, c = conv_stack(VGG11, rng)
    layers.append(Flatten("flatten", (x,)))
    w = rng.standard_normal((CLASSES, c)).astype(np.float32) * np.sqrt(1 / c)
    layers.append(Linear("fc", ("flatten",), weight=w,
                         bias=np.zeros(CLASSES, dtype=np.float32)))
    return Model("vgg11", "x", (3, 32, 32), layers)


def images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def run(folder: Path, sim: str, images_n: int, synth: bool = False) -> dict:
    import dynfix

    model = vgg11_model()
    t0 = time.time()
    q = dynfix.quantize(model, calib=images(16, 1), bits="8", method="greedy-paper")
    t_quant = time.time() - t0
    t0 = time.time()
    g = dynfix.generate(q, folder / "gen", board="ulx3s")
    t_gen = time.time() - t0
    t0 = time.time()
    s = dynfix.simulate(g, data=images(images_n, 2), images=images_n, simulator=sim,
                        build_dir=folder / "build")
    t_sim = time.time() - t0
    seconds = {"quantize": t_quant, "fit and generate": t_gen, "simulate": t_sim}
    b = None
    if synth:
        t0 = time.time()
        b = dynfix.synth(g, board="ulx3s", build_dir=folder / "build", check_timing=False)
        seconds["synthesize (all builds)"] = time.time() - t0
    return {"g": g, "s": s, "synth": b, "seconds": seconds}


def synth_lines(b) -> list[str]:
    """The bitstream's figures: resources, the clock it runs at, the SDRAM's clock."""
    if b is None:
        return []
    sd = b.sdram
    steps = ", ".join(f"{st['clock_mhz']:.2f} MHz -> Fmax {st['fmax_mhz']:.2f} "
                      f"({'met' if st['timing_met'] else 'missed'})" for st in b.closure)
    return [
        f"* bitstream (`dynfix synth`, yowasp yosys + nextpnr-ecp5, timing closure on the "
        f"PLL: {steps}): runs at {b.clock_mhz:.3f} MHz, Fmax {b.fmax_mhz:.2f} MHz, timing "
        f"{'met' if b.timing_met else 'NOT met'}; {b.luts:,} LUT4s, {b.ffs:,} FFs, "
        f"{b.dsps} MULT18X18D, {b.brams} DP16KD; critical path {b.critical_path}",
        f"* SDRAM clock: {sd['clock_mhz']:.3f} MHz, CAS latency {sd['cas_latency']}, "
        f"{sd['phase_deg']:.1f} degrees behind the engine's clock (leads by "
        f"{sd['lead_ns']:.2f} ns; window {sd['lead_window_ns'][0]:.2f}-"
        f"{sd['lead_window_ns'][1]:.2f} ns from the data sheet's figures and assumed ECP5 "
        f"I/O timing, `docs/boards.md`); not run on a board",
        "* weights: `weights.flash.bin` in the SPI flash, copied to the SDRAM at power-up; "
        "program with " + "; ".join(f"`{c}`" for c in b.program),
    ]


def table(r: dict) -> list[str]:
    g, s = r["g"], r["s"]
    est, cfg = g.estimate, g.config
    model_cycles = [layer["cycles"] for layer in est["layers"]]
    rows = []
    for i, layer in enumerate(est["layers"]):
        waits = layer.get("waits", 0)
        bound = "bandwidth" if waits * 2 >= layer["cycles"] else "compute"
        sim_cycles = s.layer_cycles[0][i] if s.layer_cycles else None
        rows.append([layer["name"], layer["kind"], f"{layer['macs']:,}",
                     f"{layer['cycles']:,}", f"{sim_cycles:,}", f"{waits:,}",
                     f"{layer['utilization']:.1%}", bound])
    lines = [
        "# VGG-11 (32 x 32 x 3) on the ULX3S, weights in SDRAM",
        "",
        "Generated by `bench/vgg11_ulx3s.py`: seeded random He-scaled weights, 8-bit "
        "greedy-paper formats, the fit's engine for the ULX3S, random inputs through the "
        "engine's Verilog in Verilator with the SDRAM controller (`hw/sdram_axi.py`) and the "
        "chip model (`sim/sdram_model.v`, which fails the run on any violation of the "
        "part's rules) against the integer model.",
        "",
        f"* engine: {cfg.summary()} ({cfg.multipliers} products); what limits it: "
        f"{g.fit.limit}",
        f"* weights from SDRAM per inference: {est.get('bulk_bytes', 0):,} bytes (the "
        f"16-bit SDRAM moves at most 2 bytes per cycle)",
        f"* cycles per image: {s.cycles[0]:,} simulated; the cycle model "
        f"{est['cycles_per_image']:,} (with the SDRAM a lower bound: its refreshes and row "
        f"changes are not modelled)",
        f"* layers as the model times them: "
        f"{'all' if all(lc == model_cycles for lc in s.layer_cycles) else 'not all'}",
        f"* bit-exact: {s.n} input(s), {s.mismatches} mismatching",
        *synth_lines(r.get("synth")),
        *([f"* latency at the bitstream's clock: {s.cycles[0] / (r['synth'].clock_mhz * 1e3):.2f}"
           f" ms per image"] if r.get("synth") else []),
        "* seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items()),
        "",
    ]
    lines += md_table(["layer", "kind", "MACs", "cycles (model)", "cycles (simulated)",
                       "waits for weights (model)", "utilization (model)", "bound"], rows)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", default="verilator")
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--synth", action="store_true", help="also build the bitstream")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = run(Path(tmp), args.sim, args.images, args.synth)
        lines = table(r)
    write_result("vgg11_ulx3s.md", lines)


if __name__ == "__main__":
    main()
