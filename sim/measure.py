"""MAC utilization and cycle-model error from simulated cycle counts.

``python -m dynfix.sim.measure OUT.json [--simulator verilator]`` runs the standard figure
set (the digits network and a VGG-style network at two engine sizes) and writes the rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dynfix.hw.compiler import compile_model
from dynfix.hw.config import EngineConfig
from dynfix.hw.cycle_model import layer_cycles
from dynfix.hw.generate import write_outputs
from dynfix.quant.datasets import load_digits
from dynfix.quant.load import load_model
from dynfix.quant.search import search
from dynfix.quant.ir import Conv2d, Flatten, Linear, MaxPool2d, Model, ReLU
from dynfix.quant.qspec import QuantSpec
from dynfix.hw.design import Design
from .simulate import simulate


def measure(model: Model, spec: QuantSpec, cfg: EngineConfig, x: np.ndarray,
            workdir: str | Path, simulator: str = "icarus") -> dict:
    """Simulate one input; per layer: MACs, simulated and predicted cycles, utilization,
    the model's relative error; plus whether the outputs match the integer model."""
    workdir = Path(workdir)
    cm = compile_model(model, spec, cfg)
    report = write_outputs(cm, model.name, workdir / "gen")
    res = simulate(Design(workdir / "gen", report, model, spec, cm), x[:1], None,
                   workdir / "build", simulator)
    mults = cm.config.multipliers
    rows = []
    for p, sim in zip(cm.plans, res.image_layer_cycles[0]):
        est = layer_cycles(cm.config, p)
        rows.append({"layer": p.name, "kind": p.kind, "kernel": list(p.kernel),
                     "in_shape": list(p.in_shape), "out_shape": list(p.out_shape),
                     "macs": p.macs, "cycles_sim": sim, "cycles_model": est,
                     "utilization": round(p.macs / (sim * mults), 4),
                     "model_error": round((est - sim) / sim, 4)})
    return {"model": model.name, "tn": cfg.tn, "tm": cfg.tm, "im2col": cfg.im2col,
            "multipliers": mults, "cycles_sim": res.cycles[0],
            "bit_exact": res.mismatches == 0, "layers": rows}


def vgg_model(seed: int = 0) -> tuple[Model, np.ndarray]:
    """conv3x3 16->32 pad 1 on 32x32 + ReLU, conv1x1 32->16 + ReLU + pool 2, FC 4096->10."""
    rng = np.random.default_rng(seed)

    def w(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    layers = [
        Conv2d("conv3x3", ("x",), weight=w(32, 16, 3, 3, scale=0.1), bias=w(32, scale=0.1),
               pads=(1, 1, 1, 1)),
        ReLU("relu1", ("conv3x3",)),
        Conv2d("conv1x1", ("relu1",), weight=w(16, 32, 1, 1, scale=0.2), bias=w(16, scale=0.1)),
        ReLU("relu2", ("conv1x1",)),
        MaxPool2d("pool", ("relu2",), kernel=(2, 2), stride=(2, 2)),
        Flatten("flat", ("pool",)),
        Linear("fc", ("flat",), weight=w(10, 16 * 16 * 16, scale=0.02), bias=w(10, scale=0.1)),
    ]
    model = Model("vgg", "x", (16, 32, 32), layers)
    return model, rng.standard_normal((8, 16, 32, 32)).astype(np.float32)


def figure_set(workdir: Path, simulator: str) -> list[dict]:

    digits = load_model("digits")
    dx, _ = load_digits("calib")
    dspec = search(digits, dx, bits="8")
    vgg, vx = vgg_model()
    vspec = search(vgg, vx, bits="8")
    runs = []
    for name, model, spec, x in (("digits", digits, dspec, dx), ("vgg", vgg, vspec, vx)):
        for cfg in (EngineConfig(tn=9, tm=1), EngineConfig(tn=18, tm=2)):
            tag = f"{name}-tn{cfg.tn}tm{cfg.tm}"
            runs.append(measure(model, spec, cfg, x, workdir / tag, simulator))
            print(json.dumps(runs[-1]), flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("output", help="where to write the rows (JSON)")
    ap.add_argument("--simulator", default="verilator", choices=("icarus", "verilator"))
    ap.add_argument("--workdir", default="measure-work")
    args = ap.parse_args(argv)
    runs = figure_set(Path(args.workdir), args.simulator)
    Path(args.output).write_text(json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
