"""One signed product per ECP5 MULT18X18D with the cell's own input and output registers.

yosys maps a product to a MULT18X18D without its registers (``ecp5_dsp`` off: the engine's
operand and product registers stay in the fabric), and nextpnr-ecp5 then times the cell as
combinational, from a fabric register through the cell to a fabric register across the DSP
columns: that path set the Fmax of the ECP5 engines. nextpnr applies the cell's own, faster
timings when its registers are enabled (YosysHQ/nextpnr#435: with ``REG_INPUTA_CLK`` /
``REG_INPUTB_CLK`` set the inputs are register setups, with ``REG_OUTPUT_CLK`` the output
is a clock-to-out), so here the cell is instantiated with its input registers and its output
register on, clocked by ``CLK0`` (the sync clock), ``CE0`` high, ``RST0`` low, ``SIGNEDA`` and
``SIGNEDB`` high (operands sign-extended to 18 bits), and a fabric register on each side of
it, as :class:`~dynfix.hw.ice40_dual_mac.DualMul` does for the iCE40 SB_MAC16: four registers
from the operands to the product, the MAC array's latency.

yosys has no simulation model of the cell (``ecp5/cells_bb.v`` is a black box), so dynfix
carries its own, for the modes it uses (:data:`CELL_MODEL`, ``ecp5_mult18x18d_sim.v``); the
cocotb test runs the instance with that model against Python's products.
"""

from __future__ import annotations

from pathlib import Path

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from dynfix.errors import DynfixError
from .config import ECP5_DSP_BITS
from . import timing

__all__ = ["CELL", "CELL_MODEL", "CELL_OPEN", "LATENCY", "OPERAND_BITS", "Ecp5Mul",
           "cell_product", "operand_registers", "product_signature"]

#: The ECP5 DSP primitive (one 18 x 18 multiplier of a sysDSP slice).
CELL = "MULT18X18D"
#: dynfix's simulation model of the cell (the modes :class:`Ecp5Mul` uses).
CELL_MODEL = Path(__file__).with_name("ecp5_mult18x18d_sim.v")
#: Widest signed operand the cell multiplies.
OPERAND_BITS = ECP5_DSP_BITS
#: Cycles from the operands to the product: a fabric register, the cell's input register,
#: the cell's output register, a fabric register (the MAC array's multiplier stages).
LATENCY = timing.MULTIPLIER

#: The cell's configuration: A and B registered, the product registered at the output, all on
#: CLK0 / CE0 / RST0; no C register, no pipeline register, no bypass.
CELL_PARAMS = {
    "REG_INPUTA_CLK": "CLK0", "REG_INPUTA_CE": "CE0", "REG_INPUTA_RST": "RST0",
    "REG_INPUTB_CLK": "CLK0", "REG_INPUTB_CE": "CE0", "REG_INPUTB_RST": "RST0",
    "REG_INPUTC_CLK": "NONE", "REG_PIPELINE_CLK": "NONE",
    "REG_OUTPUT_CLK": "CLK0", "REG_OUTPUT_CE": "CE0", "REG_OUTPUT_RST": "RST0",
    "MULT_BYPASS": "DISABLED", "RESETMODE": "SYNC",
}
#: Inputs tied off: signed operands, A and B from the ports (not the shift inputs), CE0 on,
#: RST0 off, C zero.
CELL_TIES = {"SIGNEDA": 1, "SIGNEDB": 1, "SOURCEA": 0, "SOURCEB": 0, "CE0": 1, "RST0": 0,
             **{f"C{i}": 0 for i in range(18)}}
#: Inputs left unconnected, as yosys's own mapping leaves them: the shift inputs ``SRIA`` /
#: ``SRIB`` come from the neighbouring slice on dedicated wires and the other clocks, enables
#: and resets only reach the cell from the clock and control networks, so no fabric net can
#: tie them (nextpnr failed to route the ground net to them).
CELL_OPEN = (*(f"{port}{i}" for port in ("CLK", "CE", "RST") for i in (1, 2, 3)),
             *(f"{bus}{i}" for bus in ("SRIA", "SRIB") for i in range(18)))
#: Outputs left open: the registered operands, their shift outputs, C, the product's sign.
CELL_UNUSED = {"ROA": 18, "ROB": 18, "ROC": 18, "SROA": 18, "SROB": 18, "SIGNEDP": 1}


def product_signature(a_bits: int, b_bits: int) -> dict:
    """The members of a product component: ``a``, ``b`` in, the exact ``p`` out (signed)."""
    return {"a": In(signed(a_bits)), "b": In(signed(b_bits)), "p": Out(signed(a_bits + b_bits))}


def operand_registers(m: Module, a, b, name: str) -> tuple[Signal, Signal]:
    """Fabric registers of the operands ``a``, ``b``, at their widths, named ``{name}_a``
    and ``{name}_b`` (the MAC array gives them its operand-copy prefix, which ECP5
    synthesis keeps apart)."""
    a_reg = Signal(a.shape(), name=f"{name}_a")
    b_reg = Signal(b.shape(), name=f"{name}_b")
    m.d.sync += [a_reg.eq(a), b_reg.eq(b)]
    return a_reg, b_reg


def cell_product(m: Module, a, b, cell: bool) -> Signal:
    """The registered product ``a * b`` of signed operands of at most :data:`OPERAND_BITS`
    bits, two cycles after them (the cell's input and output registers), as the cell's
    36-bit output ``o``: the MULT18X18D instance (``cell``), or a behavioural model with
    the same registers for Amaranth's simulator (which leaves an instance's outputs at 0)."""
    o = Signal(signed(2 * OPERAND_BITS), name="o")
    if cell:
        a18 = Signal(signed(OPERAND_BITS), name="a18")
        b18 = Signal(signed(OPERAND_BITS), name="b18")
        m.d.comb += [a18.eq(a), b18.eq(b)]
        unused = {port: Signal(width, name=port.lower()) for port, width in CELL_UNUSED.items()}
        ports = {
            **{f"i_{k}": Const(v, 1) for k, v in CELL_TIES.items()},
            "i_CLK0": ClockSignal(),
            **{f"i_A{i}": a18[i] for i in range(OPERAND_BITS)},
            **{f"i_B{i}": b18[i] for i in range(OPERAND_BITS)},
            **{f"o_P{i}": o[i] for i in range(2 * OPERAND_BITS)},
            **{(f"o_{port}{i}" if width > 1 else f"o_{port}"): unused[port][i]
               for port, width in CELL_UNUSED.items() for i in range(width)},
        }
        m.submodules.cell = Instance(CELL, **{f"p_{k}": v for k, v in CELL_PARAMS.items()},
                                     **ports)
    else:
        # The cell's input registers, then its output register (signed product).
        a_reg = Signal(a.shape(), name="a_reg")
        b_reg = Signal(b.shape(), name="b_reg")
        m.d.sync += [a_reg.eq(a), b_reg.eq(b), o.eq(a_reg * b_reg)]
    return o


class Ecp5Mul(wiring.Component):
    """The signed product ``p = a * b`` on one MULT18X18D, exact, after :data:`LATENCY`
    cycles, one per cycle.

    Parameters
    ----------
    a_bits, b_bits : int
        Operand widths, at most :data:`OPERAND_BITS` (sign-extended to 18 bits in front of
        the cell).
    cell : bool
        True: the MULT18X18D instance (for synthesis, and for Verilog simulation with
        :data:`CELL_MODEL`). False: a behavioural model with the same registers and latency,
        for Amaranth's simulator (which does not run an instance: its outputs would stay 0).
    operand_name : str
        Name of the fabric operand registers (``{operand_name}_a``, ``_b``): the MAC array
        gives them its operand-copy prefix, which ECP5 synthesis keeps apart.

    Members
    -------
    a : In(signed(a_bits))
    b : In(signed(b_bits))
    p : Out(signed(a_bits + b_bits))
    """

    def __init__(self, a_bits: int, b_bits: int, cell: bool = True,
                 operand_name: str = "operand"):
        if not (1 <= a_bits <= OPERAND_BITS and 1 <= b_bits <= OPERAND_BITS):
            raise DynfixError(f"{CELL} products take operands of 1..{OPERAND_BITS} bits, "
                              f"not {a_bits} x {b_bits}")
        self._a_bits, self._b_bits, self._cell = a_bits, b_bits, cell
        self._operand_name = operand_name
        self.latency = LATENCY
        super().__init__(product_signature(a_bits, b_bits))

    def elaborate(self, platform):
        m = Module()
        # Fabric registers in front, at the operands' width (sign-extended after them: a
        # register per extension bit would be a copy of the sign bit).
        a, b = operand_registers(m, self.a, self.b, self._operand_name)
        o = cell_product(m, a, b, self._cell)
        # The fabric register behind: the product at its exact width (it fits).
        m.d.sync += self.p.eq(o[:self._a_bits + self._b_bits])
        return m
