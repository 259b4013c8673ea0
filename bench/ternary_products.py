"""Products without multipliers at weights of at most 2 bits (the ``sign`` multiplier,
``hw/sign_product.py``): what one product costs, and what the fit makes of it.

Writes ``bench/results/ternary_products.md``:

1. LUT4s and flip-flops per product, yosys against the estimate (``hw/resources.py``): an
   8 x 8 product in LUTs and carry chains (``hw/lut_mul.py``), the same block at 8 x 2, and
   the sign product at 8 x 2; then a bank of ``tm x lanes`` sign products fed one map word
   (as the MAC array feeds them: the map value's registers merge per lane), the adder tree
   with and without the carry-ins that complete the products, and a whole sign MAC array.
   yosys: ``synth_<family>`` up to its LUT mapping, then ``abc -lut 4`` (the scripts'
   ``abc9`` exits silently in YoWASP's yosys), ``stat``; ECP5 counts a CCU2C carry cell as
   two LUT4s, iCE40's SB_CARRY shares its LUT's logic cell.
2. The fitted engine for the Brevitas ternary CNN and binary MLP fixtures
   (``tests/fixtures/qonnx``) on the iCEBreaker and the ULX3S, with and without the sign
   products (``boards.fit.fit(..., sign=False)``): products, DSP blocks, cycles per image,
   estimated LUTs and FFs (nextpnr's unit).

Run: ``.venv/bin/python bench/ternary_products.py`` (about a minute: yosys on small blocks).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import md_table, write_result  # noqa: E402

from amaranth.back import verilog  # noqa: E402
from amaranth.hdl import Module, signed  # noqa: E402
from amaranth.lib import data, wiring  # noqa: E402
from amaranth.lib.wiring import In, Out  # noqa: E402

from dynfix.boards.fit import fit  # noqa: E402
from dynfix.boards.registry import get_board  # noqa: E402
from dynfix.boards.synth import tool_env  # noqa: E402
from dynfix.hw.adder_tree import AdderTree  # noqa: E402
from dynfix.hw.config import EngineConfig, Multiplier  # noqa: E402
from dynfix.hw.generate import ensure_yosys  # noqa: E402
from dynfix.hw.lut_mul import LutMul  # noqa: E402
from dynfix.hw.mac_array import MacArray  # noqa: E402
from dynfix.hw.resources import (Device, adder_tree, estimate, lut_product_usage,  # noqa
                                 sign_product_usage, tree_carries)
from dynfix.hw.sign_product import SignProduct  # noqa: E402
from dynfix.quant.onnx.qonnx import import_qonnx  # noqa: E402

FIXTURES = HERE.parent / "tests" / "fixtures" / "qonnx"
BOARDS = ("icebreaker", "ulx3s")
#: yosys cell -> LUT4s it counts as, per family (as ``boards/block_stat.py`` counts them).
LUT_CELLS = {"ice40": {"SB_LUT4": 1}, "ecp5": {"LUT4": 1, "CCU2C": 2}}
FF_PREFIX = {"ice40": "SB_DFF", "ecp5": "TRELLIS_FF"}
#: The scripts' steps around the LUT mapping: ``abc -lut 4`` in place of their ``abc9``.
MAPPING = {
    "ice40": ("synth_ice40 -top top -run begin:map_luts\n"
              "techmap -map +/ice40/latches_map.v\nabc -lut 4\nice40_wrapcarry -unwrap\n"
              "techmap -map +/ice40/ff_map.v\nclean\nopt_lut -tech ice40\n"
              "synth_ice40 -top top -run map_cells:check"),
    "ecp5": ("synth_ecp5 -top top -run begin:map_luts\nabc -lut 4\n"
             "synth_ecp5 -top top -run map_cells:check"),
}
FITTED = dict(bias_bits=10, acc_bits=22, fmap_depth=16, weight_depth=16, bias_depth=4,
              prog_depth=2, dim_bits=5)


class SignBank(wiring.Component):
    """``tm x lanes`` sign products fed one map word and ``tm`` weight words, as the MAC
    array feeds them (no adder tree)."""

    def __init__(self, data_bits: int, lanes: int, tm: int):
        self._args = (data_bits, lanes, tm)
        super().__init__({
            "x": In(data.ArrayLayout(signed(data_bits), lanes)),
            "w": In(data.ArrayLayout(data.ArrayLayout(signed(2), lanes), tm)),
            "p": Out(data.ArrayLayout(data.ArrayLayout(signed(data_bits + 2), lanes), tm)),
            "neg": Out(data.ArrayLayout(lanes, tm)),
        })

    def elaborate(self, platform):
        m = Module()
        data_bits, lanes, tm = self._args
        for j in range(tm):
            for lane in range(lanes):
                m.submodules[f"p{j}_{lane}"] = mul = SignProduct(data_bits, 2)
                m.d.comb += [mul.a.eq(self.x[lane]), mul.b.eq(self.w[j][lane]),
                             self.p[j][lane].eq(mul.p), self.neg[j][lane].eq(mul.neg)]
        return m


def yosys_stat(component, family: str) -> tuple[int, int]:
    """(LUT4s, flip-flops) yosys maps ``component`` to for ``family``."""
    board = get_board("icebreaker" if family == "ice40" else "ulx3s")
    env = tool_env(board)
    text = verilog.convert(component, name="top", emit_src=False, strip_internal_attrs=True)
    with tempfile.TemporaryDirectory(prefix="dynfix-stat-") as tmp:
        work = Path(tmp)
        (work / "top.v").write_text(text)
        (work / "stat.ys").write_text(f"read_verilog -sv top.v\n{MAPPING[family]}\n"
                                      f"tee -q -o stat.json stat -json\n")
        run = subprocess.run([env["YOSYS"], "-q", "-s", "stat.ys"], cwd=work, env=env,
                             capture_output=True, text=True)
        if not (work / "stat.json").exists():
            raise RuntimeError(f"yosys failed: {(run.stderr or run.stdout)[-400:]}")
        cells = json.loads((work / "stat.json").read_text())["design"]["num_cells_by_type"]
    luts = sum(k * int(cells.get(c, 0)) for c, k in LUT_CELLS[family].items())
    ffs = sum(int(n) for c, n in cells.items() if c.startswith(FF_PREFIX[family]))
    return luts, ffs


def _sign_cfg(lanes: int, tm: int, data_bits: int = 8) -> EngineConfig:
    return EngineConfig(tn=lanes, tm=tm, multiplier=Multiplier.SIGN, data_bits=data_bits,
                        weight_bits=2, **FITTED)


def block_rows(log=print) -> list[list]:
    """Per block and family: yosys's LUT4s and FFs, the estimate's, per product."""
    lanes, tm, db = 8, 4, 8
    prod = db + 2
    sign_luts, sign_ffs, shared = sign_product_usage(db, 2)
    tree_adds, tree_regs = adder_tree(lanes, prod)
    mac_cfg = _sign_cfg(lanes, tm, db)
    blocks = [
        ("LutMul 8 x 8 (one product)", lambda: LutMul(8, 8), 1,
         (*lut_product_usage(8, 8),)),
        ("LutMul 8 x 2 (one product)", lambda: LutMul(8, 2), 1,
         (*lut_product_usage(8, 2),)),
        ("SignProduct 8 x 2 (one product)", lambda: SignProduct(8, 2), 1,
         (sign_luts, sign_ffs + shared)),
        (f"{tm} x {lanes} SignProducts on one map word", lambda: SignBank(db, lanes, tm),
         lanes * tm, (lanes * tm * sign_luts, lanes * tm * sign_ffs + lanes * shared)),
        (f"AdderTree of {lanes} x {prod} bits", lambda: AdderTree(prod, lanes), None,
         (tree_adds, tree_regs)),
        (f"AdderTree of {lanes} x {prod} bits with carry-ins",
         lambda: AdderTree(prod, lanes, carries=True), None,
         (tree_adds, tree_regs + tree_carries(lanes))),
    ]
    rows = []
    for family, board in (("ice40", "icebreaker"), ("ecp5", "ulx3s")):
        dev = Device.from_board(get_board(board))
        mac_est = estimate(mac_cfg, dev, lut4=True)
        mac_parts = [mac_est.blocks[b] for b in ("multipliers", "adder_trees", "accumulators")]
        # The estimate's products count their LUT4s with the family's lut_factor taken out.
        mac_luts = (mac_parts[0].luts * dev.family.lut_factor + mac_parts[1].luts
                    + mac_parts[2].luts)
        entries = blocks + [(f"MacArray sign, {tm} x {lanes} products", lambda: MacArray(mac_cfg),
                             lanes * tm, (mac_luts, sum(p.ffs for p in mac_parts)))]
        for name, make, products, (e_luts, e_ffs) in entries:
            luts, ffs = yosys_stat(make(), family)
            per = (f"{luts / products:.1f} / {ffs / products:.1f}" if products else "")
            rows.append([family, name, luts, ffs, f"{e_luts:.0f}", f"{e_ffs:.0f}", per])
            log(f"  {family} {name}: yosys {luts} LUT4s {ffs} FFs, estimate {e_luts:.0f} "
                f"/ {e_ffs:.0f}")
    return rows


def fit_rows(log=print) -> list[list]:
    """The fitted engine per fixture, board, with and without the sign products."""
    rows = []
    for name, label in (("brevitas_cnn_ternary", "ternary CNN"),
                        ("brevitas_mlp_binary", "binary MLP")):
        imp = import_qonnx(FIXTURES / f"{name}.onnx")
        for board_name in BOARDS:
            board = get_board(board_name)
            for sign in (False, True):
                c = fit(imp.model, imp.spec, board, sign=sign).chosen
                use = c.estimate.total.rounded()
                rows.append([label, board_name, "yes" if sign else "no", c.config.summary(),
                             c.config.multipliers, c.config.dsp_blocks, c.cycles, use["luts"],
                             use["ffs"], f"{board.luts}"])
                log(f"  {label} {board_name} sign={sign}: {c.config.summary()} "
                    f"{c.cycles} cycles")
    return rows


def main() -> None:
    ensure_yosys()
    blocks = block_rows()
    fits = fit_rows()
    lines = [
        "# Products without multipliers at weights of at most 2 bits", "",
        "The `sign` multiplier (`hw/sign_product.py`): a weight of -2, -1, 0 or 1 selects "
        "the map value, its double or 0 and complements it, one LUT4 per bit; each negative "
        "weight's `+1` is a carry-in of the adder tree (`hw/adder_tree.py`). Written by "
        "`bench/ternary_products.py`.", "",
        "## Per product: yosys against the estimate", "",
        "yosys: `synth_<family>` up to the LUT mapping, `abc -lut 4`, `stat` (ECP5: a CCU2C "
        "carry cell counts two LUT4s; iCE40: an SB_CARRY shares its LUT's logic cell and is "
        "not counted). Estimate: `hw/resources.py` in LUT4s (`lut_product_usage`, "
        "`sign_product_usage`, `adder_tree`, `tree_carries`; the MAC array: its blocks "
        "`multipliers`, `adder_trees`, `accumulators`). A sign product's FFs include the map "
        "value's registers when it is alone; in the bank and the array they are shared per "
        "lane.", "",
        *md_table(["family", "block", "yosys LUT4s", "yosys FFs", "estimate LUT4s",
                   "estimate FFs", "yosys LUT4s / FFs per product"], blocks), "",
        "## Fitted engines", "",
        "`boards/fit.py` on the Brevitas QONNX fixtures (ternary CNN: 2-bit narrow weights; "
        "binary MLP: BipolarQuant weights, both 2-bit formats), with the sign products "
        "(`fit(...)`) and without (`fit(..., sign=False)`, the DSP blocks' ways only). "
        "Cycles: the analytic cycle model per image; LUTs and FFs: the estimate in nextpnr's "
        "unit (iCE40 logic cells, ECP5 LUT4s).", "",
        *md_table(["model", "board", "sign products", "engine", "products", "DSP blocks",
                   "cycles / image", "est. LUTs", "est. FFs", "board LUTs"], fits), "",
        "Run: `.venv/bin/python bench/ternary_products.py`.",
    ]
    write_result("ternary_products.md", lines)


if __name__ == "__main__":
    main()
