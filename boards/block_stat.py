"""The resource estimate part by part against yosys: the engine's Verilog synthesized for the
board's family with its hierarchy kept (``synth_<family> -noflatten``), ``stat`` per module,
the modules summed into the engine's parts (:data:`dynfix.hw.resources.PARTS`) beside the
estimate's blocks for the same parts, in LUT4s and flip-flops as yosys counts them (before
nextpnr packs them).

Used by ``bench/estimate_blocks.py`` (the table in ``bench/results/estimate_blocks.md``) and
the synthesis-marked test ``tests/boards/test_block_stat.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dynfix.boards.registry import Board
from dynfix.boards.synth import tool_env
from dynfix.errors import DynfixError
from dynfix.hw.design import Design
from dynfix.hw.resources import PARTS, Device, Usage, estimate

#: yosys cell types per family: LUTs (with how many LUTs each takes: an ECP5 carry cell
#: CCU2C is two, an iCE40 SB_CARRY shares the logic cell of its LUT), DSPs, block RAMs,
#: SPRAMs (flip-flops: ``FpgaFamily.ff_cell``).
CELLS = {"ice40": ({"SB_LUT4": 1}, "SB_MAC16", "SB_RAM40_4K", "SB_SPRAM256KA"),
         "ecp5": ({"LUT4": 1, "CCU2C": 2}, "MULT18X18D", "DP16KD", "")}


@dataclass
class PartUsage:
    """One part of the engine: the estimate and what yosys made of it."""

    part: str
    estimate: Usage
    yosys: Usage

    def ratio(self, key: str) -> float | None:
        """Estimate / yosys for ``luts`` or ``ffs``; None where yosys counts none."""
        got = getattr(self.yosys, key)
        return getattr(self.estimate, key) / got if got else None


def module_usage(stat: dict, board: Board) -> dict[str, Usage]:
    """Each module's own cells (submodule instances not included) from ``stat -json``."""
    lut, dsp, bram, spram = CELLS[board.family.name]
    out = {}
    for name, mod in stat["modules"].items():
        cells = {k: int(n) for k, n in mod.get("num_cells_by_type", {}).items()}
        out[name.lstrip("\\")] = Usage(
            luts=sum(k * cells.get(cell, 0) for cell, k in lut.items()),
            ffs=sum(n for k, n in cells.items() if k.startswith(board.family.ff_cell)),
            dsps=cells.get(dsp, 0), brams=cells.get(bram, 0),
            sprams=cells.get(spram, 0) if spram else 0)
    return out


def yosys_stat(verilog: Path, top: str, board: Board) -> dict:
    """``stat -json`` of ``verilog`` synthesized for the board's family, hierarchy kept."""
    family = board.family
    script = "\n".join([
        "read_verilog -sv engine.v", family.yosys_after_read,
        f"synth_{family.name} -noflatten -top {top}",
        "tee -q -o stat.json stat -json", ""])
    with tempfile.TemporaryDirectory(prefix="dynfix-stat-") as tmp:
        work = Path(tmp)
        shutil.copyfile(verilog, work / "engine.v")
        (work / "stat.ys").write_text(script)
        env = tool_env(board)
        run = subprocess.run([env["YOSYS"], "-q", "-s", "stat.ys"], cwd=work, env=env,
                             capture_output=True, text=True)
        if run.returncode != 0 or not (work / "stat.json").exists():
            tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DynfixError(f"yosys failed on {verilog.name}: {tail[0]}")
        return json.loads((work / "stat.json").read_text())


def compare(design: Design, board: Board) -> list[PartUsage]:
    """The engine of ``design`` on ``board``: per part, the estimate and yosys's count (the
    parts the engine has)."""
    est = estimate(design.config, Device.from_board(board), lut4=True)
    mods = module_usage(yosys_stat(design.verilog, design.top, board), board)
    rows = []
    for part, (blocks, prefixes) in PARTS.items():
        use = Usage()
        for name, u in mods.items():
            sub = name[len(design.top) + 1:] if name != design.top else ""
            if any(_member(sub, p) for p in prefixes):
                use = use + u
        mine = sum((est.blocks[b] for b in blocks if b in est.blocks), Usage())
        if use.luts or use.ffs or use.dsps or use.brams or use.sprams or mine.luts:
            rows.append(PartUsage(part, mine, use))
    return rows


def _member(sub: str, prefix: str) -> bool:
    """Are the cells of submodule path ``sub`` (``""``: the engine's own) part of the
    submodule ``prefix``, an indexed one (``rq3``) or one inside them?"""
    if not prefix:
        return not sub
    head = sub.split(".", 1)[0]
    return head == prefix or (head.startswith(prefix) and head[len(prefix):].isdigit())


def table(rows: list[PartUsage]) -> list[str]:
    """Markdown rows: part, LUT4s and FFs estimated / synthesized, the ratios, memories."""
    def ratio(r: PartUsage, key: str) -> str:
        q = r.ratio(key)
        return "-" if q is None else f"{q:.2f}"
    lines = ["| part | LUT4s est. | LUT4s yosys | ratio | FFs est. | FFs yosys | ratio "
             "| DSPs est./yosys | BRAMs est./yosys |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.part} | {r.estimate.luts:,.0f} | {r.yosys.luts:,.0f} | "
                     f"{ratio(r, 'luts')} | {r.estimate.ffs:,.0f} | {r.yosys.ffs:,.0f} | "
                     f"{ratio(r, 'ffs')} | {r.estimate.dsps}/{r.yosys.dsps} | "
                     f"{r.estimate.brams}/{r.yosys.brams} |")
    total = PartUsage("total", sum((r.estimate for r in rows), Usage()),
                      sum((r.yosys for r in rows), Usage()))
    lines.append(f"| **total** | {total.estimate.luts:,.0f} | {total.yosys.luts:,.0f} | "
                 f"{ratio(total, 'luts')} | {total.estimate.ffs:,.0f} | "
                 f"{total.yosys.ffs:,.0f} | {ratio(total, 'ffs')} | "
                 f"{total.estimate.dsps}/{total.yosys.dsps} | "
                 f"{total.estimate.brams}/{total.yosys.brams} |")
    return lines
