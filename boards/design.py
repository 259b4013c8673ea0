"""A generated design (:class:`~dynfix.hw.design.Design`) as a board design: the engine
Verilog behind the board top's UART link, its clock, and the flash image of the weights."""

from __future__ import annotations

from pathlib import Path

from dynfix.boards.board_top import BoardTop, check_link
from dynfix.boards.engine_instance import EngineInstance
from dynfix.boards.flash_image import FILE_NAME, weight_payload, write_flash_files
from dynfix.boards.pll import Ecp5Pll, Ice40Pll, fastest_pll
from dynfix.boards.protocol import LinkInfo
from dynfix.boards.registry import Board
from dynfix.boards.spi_flash_reader import sck_divider
from dynfix.boards.synth import SynthResult
from dynfix.boards.uart_tx import baud_divisor
from dynfix.errors import DynfixError
from dynfix.hw.design import Design
from dynfix.hw.host_interface import EngineHostSignature


def link_info(design: Design) -> LinkInfo:
    """What the UART link carries for ``design``: values in and out per image, and their
    widths."""
    return LinkInfo(n_in=design.input_values, n_out=design.output_values,
                    in_bits=design.data_bits, out_bits=design.data_bits)


def weights_payload(design: Design) -> bytes | None:
    """The flash payload of an engine that loads its weights (``w_spram``): ``weights.hex``
    padded to the memory's depth, as halfwords (:func:`weight_payload`); None otherwise."""
    if not design.weight_load:
        return None
    path = design.folder / "weights.hex"
    try:
        words = [int(tok, 16) for tok in path.read_text().split()]
    except (OSError, ValueError) as e:
        raise DynfixError(f"{design.folder}: cannot read the weights for the flash image "
                          f"({e}); re-run dynfix generate") from None
    cfg = design.config
    return weight_payload(words, cfg.weight_depth, cfg.weight_word_bits)


def board_pll(board: Board, clock_mhz: float | None) -> Ice40Pll | Ecp5Pll | None:
    """The PLL setting that clocks the design at the highest frequency the PLL reaches at or
    below ``clock_mhz`` (None: the board's oscillator, no PLL)."""
    if clock_mhz is None or clock_mhz == board.clock_mhz:
        return None
    return fastest_pll(board.family.name, board.clock_mhz, clock_mhz)


def board_top(design: Design, board: Board, pll: Ice40Pll | Ecp5Pll | None = None
              ) -> BoardTop:
    """The board top around the generated engine, for ``board``'s UART and its clock (the
    oscillator, or ``pll``'s output); an engine with its weights in SPRAM loads them from
    the board's flash at power-up, SCK within the flash's read limit."""
    info = link_info(design)
    check_link(EngineHostSignature(info.in_bits), info)     # before building anything
    weights = weights_payload(design)
    if weights is not None and board.spram is None:
        raise DynfixError(f"the engine in {design.folder} keeps its weights in iCE40 SPRAM; "
                          f"{board.name} has none: generate the engine for this board")
    clk_hz = (pll.f_out if pll is not None else board.clock_mhz) * 1e6
    divisor = baud_divisor(clk_hz, board.baud)
    engine = EngineInstance(design.verilog, info.in_bits, design.top,
                            weight_load=design.weight_load)
    return BoardTop(engine, info, divisor=divisor, board=board, weights=weights,
                    clk_hz=round(clk_hz), sck_div=sck_divider(clk_hz), pll=pll)


def add_flash_image(result: SynthResult, design: Design, build_dir: str | Path) -> None:
    """For an engine that loads its weights from flash: write ``build_dir/weights.flash.bin``
    (:func:`~dynfix.boards.flash_image.write_flash_files`) and record it in ``result`` with
    the two commands that program the board, run in ``build_dir``: the bitstream at 0, then
    the weights at 1 MiB."""
    payload = weights_payload(design)
    if payload is None:
        return
    commands = write_flash_files(build_dir, payload)
    result.flash_image = str(Path(build_dir) / FILE_NAME)
    result.program = [f"iceprog {Path(result.bitstream).name}", commands[0]]
