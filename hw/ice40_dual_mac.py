"""Two signed products per iCE40 SB_MAC16: the DSP block's dual 8x8 mode.

With ``MODE_8x8 = 1`` and both output selects at ``2'b10`` an SB_MAC16 puts two independent
8 x 8 products on its output: ``O[31:16] = A[15:8] * B[15:8]`` and ``O[15:0] = A[7:0] *
B[7:0]``. ``A_SIGNED`` / ``B_SIGNED`` make both halves signed in this mode only (in the 16 x
16 mode the low bytes are the unsigned lower digits of a wide operand). yosys's cell model
(``techlibs/ice40/cells_sim.v``, :func:`dynfix.hw.ice40_cells.cell_model`) sign-extends the
low bytes exactly when ``MODE_8x8`` is set; that model was corrected against Lattice's own simulation model for the signed modes
(YosysHQ/yosys#1211, #1212), and MARLANN (SymbioticEDA, ``rtl/compute.v``), an iCE40UP5K
design, configures the cell the same way with a behavioural twin that multiplies both bytes
signed. So both halves are exact signed products as the cell gives
them, ``-128 * -128 = 16384`` included (it fits the half's 16 bits): no offset or sign
correction is needed, and none is applied. The cocotb test runs the generated Verilog against
that cell model on every pair of 8-bit operands in both halves, so a model that treated the
low half as unsigned would fail it.

yosys never infers this mode (``ice40_dsp`` maps 16 x 16 products only), so the cell is
instantiated. nextpnr packs it as given but times every DSP port as a register with a
placeholder delay, so the cell's own input registers (``A_REG``, ``B_REG``) and product
registers (``*_8x8_MULT_REG``) are on, which makes that assumption true, and fabric
registers sit on both sides of it: the cell's placement in one of the two DSP columns is then
the only routing on a path.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dynfix.errors import DynfixError
from .config import DUAL_MAC_BITS
from . import timing

__all__ = ["CELL", "HALF_BITS", "LATENCY", "DualMul"]

#: The iCE40 DSP primitive.
CELL = "SB_MAC16"
#: Widest signed operand each half multiplies.
HALF_BITS = DUAL_MAC_BITS
#: Cycles from the operands to the products: a fabric register, the cell's input register,
#: the cell's product register, a fabric register (the MAC array's multiplier stages).
LATENCY = timing.MULTIPLIER

#: The cell's configuration: registered inputs and products, both 8 x 8 products on ``O``,
#: the accumulators unused.
CELL_PARAMS = {
    "NEG_TRIGGER": Const(0, 1),
    "A_REG": Const(1, 1), "B_REG": Const(1, 1), "C_REG": Const(0, 1), "D_REG": Const(0, 1),
    "TOP_8x8_MULT_REG": Const(1, 1), "BOT_8x8_MULT_REG": Const(1, 1),
    "PIPELINE_16x16_MULT_REG1": Const(0, 1), "PIPELINE_16x16_MULT_REG2": Const(0, 1),
    "TOPOUTPUT_SELECT": Const(0b10, 2), "TOPADDSUB_LOWERINPUT": Const(0, 2),
    "TOPADDSUB_UPPERINPUT": Const(0, 1), "TOPADDSUB_CARRYSELECT": Const(0, 2),
    "BOTOUTPUT_SELECT": Const(0b10, 2), "BOTADDSUB_LOWERINPUT": Const(0, 2),
    "BOTADDSUB_UPPERINPUT": Const(0, 1), "BOTADDSUB_CARRYSELECT": Const(0, 2),
    "MODE_8x8": Const(1, 1), "A_SIGNED": Const(1, 1), "B_SIGNED": Const(1, 1),
}
#: Inputs tied off: clock enable on; no holds, resets, loads, subtraction, carries or C/D.
CELL_TIES = {"CE": Const(1, 1), "C": Const(0, 16), "D": Const(0, 16), **{
    port: Const(0, 1) for port in (
        "AHOLD", "BHOLD", "CHOLD", "DHOLD", "IRSTTOP", "IRSTBOT", "ORSTTOP", "ORSTBOT",
        "OLOADTOP", "OLOADBOT", "ADDSUBTOP", "ADDSUBBOT", "OHOLDTOP", "OHOLDBOT", "CI",
        "ACCUMCI", "SIGNEXTIN")}}
#: Outputs left open (the accumulators' carries and sign).
CELL_UNUSED = ("CO", "ACCUMCO", "SIGNEXTOUT")


class DualMul(wiring.Component):
    """Two signed products ``p[h] = a[h] * b[h]`` (``h = 0, 1``) on one SB_MAC16, exact, after
    :data:`LATENCY` cycles, one pair per cycle.

    Parameters
    ----------
    a_bits, b_bits : int
        Operand widths, at most :data:`HALF_BITS` (operands are sign-extended to 8 bits).
    cell : bool
        True: the SB_MAC16 instance (for synthesis and for Verilog simulation with yosys's
        cell model, :func:`cell_model`). False: a behavioural model with the same registers
        and latency, for Amaranth's simulator (which does not run an instance: its outputs
        would stay 0).

    Members
    -------
    a : In(ArrayLayout(signed(a_bits), 2))        half 0 goes to A[7:0], half 1 to A[15:8]
    b : In(ArrayLayout(signed(b_bits), 2))
    p : Out(ArrayLayout(signed(a_bits + b_bits), 2))
    """

    def __init__(self, a_bits: int, b_bits: int, cell: bool = True):
        if not (1 <= a_bits <= HALF_BITS and 1 <= b_bits <= HALF_BITS):
            raise DynfixError(f"{CELL} dual 8x8 products take operands of 1..{HALF_BITS} "
                              f"bits, not {a_bits} x {b_bits}")
        self._a_bits, self._b_bits, self._cell = a_bits, b_bits, cell
        self.latency = LATENCY
        super().__init__({
            "a": In(data.ArrayLayout(signed(a_bits), 2)),
            "b": In(data.ArrayLayout(signed(b_bits), 2)),
            "p": Out(data.ArrayLayout(signed(a_bits + b_bits), 2)),
        })

    def elaborate(self, platform):
        m = Module()
        byte = data.ArrayLayout(signed(HALF_BITS), 2)      # half h in bits 8h .. 8h+7
        half = data.ArrayLayout(signed(16), 2)              # half h in bits 16h .. 16h+15
        # Fabric registers in front: the operands sign-extended to the cell's bytes.
        a = Signal(byte, name="a_in")
        b = Signal(byte, name="b_in")
        m.d.sync += [a[h].eq(self.a[h]) for h in range(2)]
        m.d.sync += [b[h].eq(self.b[h]) for h in range(2)]
        o = Signal(half, name="o")
        if self._cell:
            m.submodules.cell = Instance(
                CELL, **{f"p_{k}": v for k, v in CELL_PARAMS.items()},
                **{f"i_{k}": v for k, v in CELL_TIES.items()},
                i_CLK=ClockSignal(), i_A=a.as_value(), i_B=b.as_value(), o_O=o.as_value(),
                **{f"o_{k}": Signal(name=k.lower()) for k in CELL_UNUSED})
        else:
            # The cell's input registers, then its two product registers (both signed).
            a_reg = Signal(byte, name="a_reg")
            b_reg = Signal(byte, name="b_reg")
            m.d.sync += [a_reg.eq(a), b_reg.eq(b)]
            m.d.sync += [o[h].eq(a_reg[h] * b_reg[h]) for h in range(2)]
        # Fabric registers behind: the products at their exact width (they fit).
        m.d.sync += [self.p[h].eq(o[h]) for h in range(2)]
        return m
