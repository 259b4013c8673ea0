"""The multiplier array: tm dot products of one map word, with bias and accumulation."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .adder_tree import AdderTree
from .config import EngineConfig
from .ecp5_mul import Ecp5Mul
from .ecp5_packed_mul import Ecp5PackedMul
from .ice40_dual_mac import DualMul
from .lut_mul import LutMul
from .pipeline import delay
from .sign_product import SignProduct
from .timing import OPERAND_STAGES, PRODUCT_STAGES, mac_latency


#: Name prefix of the per-row operand registers. Every row of multipliers gets its own copy
#: of the map word, so no register fans out across the die; on ECP5 synthesis must not merge
#: the identical copies (``boards/synth.py`` marks them keep).
OPERAND_COPY = "mac_operand"
# With ``dual_mac`` (iCE40 SB_MAC16 pairs, hw/ice40_dual_mac.py) there are as many: a fabric
# register and the cell's own on each side of the multiplier (timing.MULTIPLIER), so the
# latency does not change. With ``ecp5_dsp`` (ECP5 MULT18X18D with its own registers,
# hw/ecp5_mul.py) likewise, and nextpnr then times the cells as registered, which raises
# Fmax (docs/boards.md, "Measurements behind the design").


class MacArray(wiring.Component):
    """``tm x lanes`` multipliers, one pipelined adder tree per output channel and an
    accumulator of ``acc_bits`` that starts from ``bias << bias_shift`` on the first item of
    an output pixel and is emitted on its last item (the output is the accumulator). The
    compiler's biases hold the requantizer's rounding constant too (``hw/compiler``,
    ``folded_bias``), so the sum the array emits is ``acc + 2**(s-1)``; it adds modulo
    ``2**acc_bits`` (partial sums may wrap, the final one fits).

    Stages: ``OPERAND_STAGES`` copies of the operands per row of ``lanes`` multipliers,
    ``PRODUCT_STAGES`` product registers, the adder tree (one register per level), the
    accumulator. An item's bias arrives ``bias_lag`` cycles after the item, two stages before
    it is added (a register, then the shift): the engine reads its bias memory that much
    later (delaying the narrow address instead of the wide words through the pipeline), and
    the memory's output only drives a register.

    With ``cfg.dual_mac`` the products are taken in row-major order (output channel ``j``,
    then lane) and each consecutive pair goes to one :class:`~dynfix.hw.ice40_dual_mac.DualMul`
    (an SB_MAC16 in its dual 8x8 mode): with an even number of lanes both products of a cell
    belong to the same output channel; an odd count pairs the last lane of a row with the
    first of the next, and an odd total leaves the last cell's upper half idle. The cell's
    fabric and internal registers take the place of the operand and product registers (same
    latency).

    With ``cfg.ecp5_dsp`` each product goes to one
    :class:`~dynfix.hw.ecp5_mul.Ecp5Mul` (an instantiated MULT18X18D with its input and
    output registers on): a fabric operand register per product (the map value's copies keep
    the operand-copy name, one per row), the cell's two registers and a fabric product
    register take the place of the operand and product registers (same latency).

    With ``cfg.packed_dsp`` the products of output channels 2r and 2r+1 in one lane (the same
    map value) share one :class:`~dynfix.hw.ecp5_packed_mul.Ecp5PackedMul` (a MULT18X18D
    whose B port takes both weights) where neither is in LUTs (``cfg.packed_pair``), with
    the same registers and latency.

    With ``cfg.lut_products`` the last products in ``cfg.product_index`` order (row-major;
    pair-major with ``packed_dsp``) are each a :class:`~dynfix.hw.lut_mul.LutMul` instead:
    partial products and adders in the fabric, never a ``$mul`` (yosys would map it to a DSP
    block), with its own operand register and the adder levels between the other registers
    (same latency).

    With ``cfg.sign_products`` (weights of at most 2 bits) every product is a
    :class:`~dynfix.hw.sign_product.SignProduct`: the map value selected, doubled or zeroed
    and complemented in LUTs, no multiplier and no adder per product (same latency). Each
    product's missing ``+1`` for a negative weight goes into its adder tree as a carry-in,
    the tree's last into the accumulator's adder.

    Parameters
    ----------
    cfg : EngineConfig
    cell : bool
        With ``dual_mac`` or ``ecp5_dsp``: the SB_MAC16 / MULT18X18D instances (True, for
        Verilog) or their behavioural model (False, for Amaranth's simulator, which leaves
        an instance's outputs at 0).

    Members
    -------
    valid, first, last : In(1)
    x : In(ArrayLayout(signed(data_bits), lanes))            one map word (padding zeroed);
                                                     with ``dw_window`` one per row (tm)
    w : In(ArrayLayout(ArrayLayout(signed(weight_bits), lanes), tm))
    bias : In(ArrayLayout(signed(bias_bits), tm))            bias_lag cycles after the item
    bias_shift : In(unsigned)                                layer constant
    o_valid : Out(1)                                         one cycle per output pixel
    o : Out(ArrayLayout(signed(acc_bits), tm))
    """

    def __init__(self, cfg: EngineConfig, cell: bool = True):
        self._cfg = cfg
        self._cell = cell
        self.latency = mac_latency(cfg.lanes)
        self.bias_lag = self.latency - 3
        n, tm = cfg.lanes, cfg.tm
        super().__init__({
            "valid": In(1), "first": In(1), "last": In(1),
            # One map word for every row, or with dw_window one per row (hw/dw_window.py).
            "x": In(data.ArrayLayout(data.ArrayLayout(signed(cfg.data_bits), n), tm)
                    if cfg.dw_window else data.ArrayLayout(signed(cfg.data_bits), n)),
            "w": In(data.ArrayLayout(data.ArrayLayout(signed(cfg.weight_bits), n), tm)),
            "bias": In(data.ArrayLayout(signed(cfg.bias_bits), tm)),
            "bias_shift": In(unsigned(cfg.bias_shift_bits)),
            "o_valid": Out(1),
            "o": Out(data.ArrayLayout(signed(cfg.acc_bits), tm)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        n, tm = cfg.lanes, cfg.tm
        prod_bits = cfg.data_bits + cfg.weight_bits
        stages = self.latency - 1           # operands, products, tree: before the accumulator
        valid = delay(m, self.valid, stages, "valid")
        first = delay(m, self.first, stages, "first")
        last = delay(m, self.last, stages, "last")
        bias = delay(m, self.bias, 1, "bias")  # bias_lag late; shifted in the last stage below
        m.d.sync += self.o_valid.eq(valid & last)

        sign = bool(cfg.sign_products)
        trees = [AdderTree(prod_bits, n, carries=sign) for _ in range(tm)]
        if cfg.dual_mac:
            self._dual_products(m, trees)
        for j, tree in enumerate(trees):
            m.submodules[f"tree{j}"] = tree
            if cfg.ecp5_dsp:
                self._cell_products(m, j, trees)
            elif sign:
                self._sign_products(m, j, tree)
            elif not cfg.dual_mac:
                self._products(m, j, tree)
            acc = Signal(signed(cfg.acc_bits), name=f"acc{j}")
            start = Signal(signed(cfg.acc_bits), name=f"bias{j}")    # off the adder's path
            m.d.sync += start.eq(bias[j] << self.bias_shift)
            total = Signal(signed(cfg.acc_bits), name=f"total{j}")
            # With sign products the tree's last carry is this adder's carry-in.
            m.d.comb += total.eq(Mux(first, start, acc) + tree.o + tree.co if sign
                                 else Mux(first, start, acc) + tree.o)
            with m.If(valid):
                m.d.sync += acc.eq(total)
            m.d.comb += self.o[j].eq(acc)
        return m

    def _row_x(self, j: int):
        """The map word row ``j`` multiplies: the one word, or with ``dw_window`` its own."""
        return self.x[j] if self._cfg.dw_window else self.x

    def _products(self, m: Module, j: int, tree: AdderTree) -> None:
        """Output channel ``j``'s products, one inferred multiplier each, between per-row
        operand registers and product registers; the last is the tree's input."""
        cfg = self._cfg
        x, w = self._row_x(j), self.w[j]
        for s in range(OPERAND_STAGES):
            x_s = Signal(x.shape(), name=f"{OPERAND_COPY}_x{j}_{s}")
            w_s = Signal(w.shape(), name=f"{OPERAND_COPY}_w{j}_{s}")
            m.d.sync += [x_s.eq(x), w_s.eq(w)]
            x, w = x_s, w_s
        for lane in range(cfg.lanes):
            if cfg.lut_product(j, lane):
                self._lut_product(m, j, lane, tree)
                continue
            p = x[lane] * w[lane]
            for s in range(PRODUCT_STAGES - 1):
                p_s = Signal(signed(cfg.data_bits + cfg.weight_bits),
                             name=f"product{j}_{lane}_{s}")
                m.d.sync += p_s.eq(p)
                p = p_s
            m.d.sync += tree.i[lane].eq(p)      # the last product register

    def _cell_products(self, m: Module, j: int, trees: list[AdderTree]) -> None:
        """Output channel ``j``'s products, one registered MULT18X18D each, or with
        ``packed_dsp`` one per pair of rows (the even row's call makes the pair's cells)."""
        cfg = self._cfg
        x, tree = self._row_x(j), trees[j]
        for lane in range(cfg.lanes):
            if cfg.lut_product(j, lane):
                self._lut_product(m, j, lane, tree)
                continue
            if cfg.packed_pair(j, lane):
                if j % 2 == 0:
                    self._packed_product(m, j, lane, trees)
                continue
            mul = Ecp5Mul(cfg.data_bits, cfg.weight_bits, cell=self._cell,
                          operand_name=f"{OPERAND_COPY}_{j}_{lane}")
            m.submodules[f"mul{j}_{lane}"] = mul
            m.d.comb += [mul.a.eq(x[lane]), mul.b.eq(self.w[j][lane]),
                         tree.i[lane].eq(mul.p)]

    def _packed_product(self, m: Module, j: int, lane: int, trees: list[AdderTree]) -> None:
        """The products of ``lane`` for output channels ``j`` and ``j + 1`` on one
        MULT18X18D (the map value they share times both weights)."""
        cfg = self._cfg
        mul = Ecp5PackedMul(cfg.data_bits, cfg.weight_bits, cell=self._cell,
                            operand_name=f"{OPERAND_COPY}_{j}p_{lane}")
        m.submodules[f"pmul{j}_{lane}"] = mul
        m.d.comb += mul.a.eq(self.x[lane])
        for h in range(2):
            m.d.comb += [mul.b[h].eq(self.w[j + h][lane]), trees[j + h].i[lane].eq(mul.p[h])]

    def _lut_product(self, m: Module, j: int, lane: int, tree: AdderTree) -> None:
        """Output channel ``j``'s product of ``lane`` in LUTs, from the array's inputs (its
        own operand register)."""
        cfg = self._cfg
        mul = LutMul(cfg.data_bits, cfg.weight_bits, operand_name=f"{OPERAND_COPY}_{j}_{lane}")
        m.submodules[f"lut{j}_{lane}"] = mul
        m.d.comb += [mul.a.eq(self._row_x(j)[lane]), mul.b.eq(self.w[j][lane]),
                     tree.i[lane].eq(mul.p)]

    def _sign_products(self, m: Module, j: int, tree: AdderTree) -> None:
        """Output channel ``j``'s products without multipliers, from the array's inputs
        (their own registers); each negative weight's ``+1`` is a carry-in of the tree."""
        cfg = self._cfg
        for lane in range(cfg.lanes):
            mul = SignProduct(cfg.data_bits, cfg.weight_bits)
            m.submodules[f"sign{j}_{lane}"] = mul
            m.d.comb += [mul.a.eq(self._row_x(j)[lane]), mul.b.eq(self.w[j][lane]),
                         tree.i[lane].eq(mul.p), tree.c[lane].eq(mul.neg)]

    def _dual_products(self, m: Module, trees: list[AdderTree]) -> None:
        """Consecutive products (row-major) in pairs on dual 8x8 SB_MAC16 cells."""
        cfg = self._cfg
        products = [(j, lane) for j in range(cfg.tm) for lane in range(cfg.lanes)]
        for c in range(0, len(products), 2):
            mul = DualMul(cfg.data_bits, cfg.weight_bits, cell=self._cell)
            m.submodules[f"dual{c // 2}"] = mul
            for h, (j, lane) in enumerate(products[c:c + 2]):
                x = self._row_x(j)
                m.d.comb += [mul.a[h].eq(x[lane]), mul.b[h].eq(self.w[j][lane]),
                             trees[j].i[lane].eq(mul.p[h])]
