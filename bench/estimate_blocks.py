"""The resource estimate part by part against yosys, for the bundled digits engine on every
board: the engine's Verilog synthesized with its hierarchy kept (yosys alone, no place and
route), each module's cells summed into the engine's parts (``hw/resources.py``, ``PARTS``)
beside the estimate's blocks for the same parts, in LUT4s and flip-flops as yosys counts
them (``boards/block_stat.py``). The fit decides on the totals; the parts say where the
estimate is off.

Writes ``bench/results/estimate_blocks.md``.
Run: ``.venv/bin/python bench/estimate_blocks.py [BOARD ...]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

import dynfix  # noqa: E402
from dynfix.boards.block_stat import compare, table  # noqa: E402
from dynfix.boards.registry import get_board, list_boards  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("boards", nargs="*", help="boards (default: every board)")
    args = ap.parse_args()
    names = args.boards or [b.name for b in list_boards()]
    spec = dynfix.quantize("digits")
    lines = ["# The resource estimate per part against yosys", "",
             "The bundled digits model (8 bit) on each board's fitted engine. Estimate: "
             "`hw/resources.py` in LUT4s and flip-flops (before the conversion to the unit "
             "nextpnr reports); yosys: `synth_<family> -noflatten`, `stat` per module, "
             "summed into the parts of `PARTS` (ECP5: a CCU2C carry cell counts two LUT4s; "
             "iCE40: an SB_CARRY shares its LUT's logic cell). Ratio = estimate / yosys.",
             "", "Run: `.venv/bin/python bench/estimate_blocks.py`.", ""]
    with tempfile.TemporaryDirectory(prefix="dynfix-bench-") as tmp:
        for name in names:
            board = get_board(name)
            design = dynfix.generate(spec, Path(tmp) / name, board=name)
            lines += [f"## {name}: `{design.config.summary()}`", ""]
            lines += table(compare(design, board)) + [""]
    write_result("estimate_blocks.md", lines)


if __name__ == "__main__":
    main()
