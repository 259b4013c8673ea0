"""A generated design (:class:`~dynfix.hw.design.Design`) as a board design: the engine
Verilog behind the board top's UART link, its clock, and the flash image of the weights (for
an engine that keeps them in SPRAM, or in the bulk memory the board top keeps in SPRAM)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dynfix.boards.board_top import (BoardTop, bulk_cells, bulk_store_refusal, check_link,
                                     coding_refusal)
from dynfix.boards.engine_instance import EngineInstance
from dynfix.boards.flash_image import (DEFAULT_FLASH, FILE_NAME, FlashCoding,
                                       bitstream_command, flash_payload, load_figures,
                                       payload_bytes, weight_payload, write_flash_files)
from dynfix.boards.pll import Ecp5Pll, Ice40Pll, fastest_pll
from dynfix.boards.protocol import LinkInfo
from dynfix.boards.registry import BOARDS_DIR, Board, get_board
from dynfix.boards.sdram_clock import SdramClock, sdram_clock, sdram_max_hz
from dynfix.boards.spi_flash_reader import sck_divider
from dynfix.boards.synth import SynthResult
from dynfix.boards.uart_tx import baud_divisor
from dynfix.errors import DynfixError
from dynfix.hw.config import BulkStore
from dynfix.hw.design import Design
from dynfix.hw.engine import bulk_signature
from dynfix.hw.host_interface import EngineHostSignature
from dynfix.hw.ice40_spram import CELL_WIDTH, spram_cells
from dynfix.hw.weight_ring import bulk_image


def link_info(design: Design) -> LinkInfo:
    """What the UART link carries for ``design``: values in and out per image, and their
    widths."""
    return LinkInfo(n_in=design.input_values, n_out=design.output_values,
                    in_bits=design.data_bits, out_bits=design.data_bits)


def weights_payload(design: Design) -> bytes | None:
    """The flash payload of an engine that loads its weights (``w_spram``): ``weights.hex``
    padded to the memory's depth, as halfwords (:func:`weight_payload`); of one that reads
    them from bulk memory (``w_bulk``): the words padded likewise as the bulk image's bus
    words (:func:`~dynfix.hw.weight_ring.bulk_image`), each little-endian
    (:func:`flash_payload`); None otherwise."""
    if not (design.weight_load or design.bulk):
        return None
    path = design.folder / "weights.hex"
    try:
        words = [int(tok, 16) for tok in path.read_text().split()]
    except (OSError, ValueError) as e:
        raise DynfixError(f"{design.folder}: cannot read the weights for the flash image "
                          f"({e}); re-run dynfix generate") from None
    cfg = design.config
    if design.weight_load:
        return weight_payload(words, cfg.weight_depth, cfg.weight_word_bits)
    if len(words) > cfg.weight_depth:
        raise DynfixError(f"{path}: {len(words)} words do not fit the engine's "
                          f"{cfg.weight_depth}; re-run dynfix generate")
    padded = words + [0] * (cfg.weight_depth - len(words))
    try:
        image = bulk_image(padded, cfg.weight_word_bits, cfg.bus_bits)
    except ValueError as e:
        raise DynfixError(f"{path}: {e}; re-run dynfix generate") from None
    return flash_payload(image, cfg.bus_bits)


def engine_instance(design: Design) -> EngineInstance:
    """The generated engine as a component, with the ports its configuration gives it
    (``wl`` with ``w_spram``, ``wbus`` and ``bulk_ready`` with ``w_bulk``)."""
    bulk = bulk_signature(design.config) if design.bulk else None
    return EngineInstance(design.verilog, design.data_bits, design.top,
                          weight_load=design.weight_load, bulk=bulk)


def check_spram(design: Design, board: Board) -> None:
    """Raise a :class:`DynfixError` unless ``board`` has the SPRAM the engine of ``design``
    needs on it: its weights (``w_spram``), or its bulk memory (``w_bulk``: the board top
    keeps it in SPRAM) beside its maps there (``m_spram``)."""
    if design.weight_load and board.spram is None:
        raise DynfixError(f"the engine in {design.folder} keeps its weights in iCE40 SPRAM; "
                          f"{board.name} has none: generate the engine for this board")
    if not design.bulk:
        return
    cfg = design.config
    refusal = bulk_store_refusal(cfg, board, build=True)
    if refusal:
        raise DynfixError(f"the engine in {design.folder} {refusal}")
    if cfg.bulk_store is BulkStore.SDRAM:
        return
    # In SPRAM: the bulk store (unless the flash itself is the bulk memory) and the maps.
    flash = cfg.bulk_store is BulkStore.FLASH
    cells = 0
    if not flash:
        if cfg.bus_bits % CELL_WIDTH:
            raise DynfixError(f"the engine in {design.folder} reads its weights over a "
                              f"{cfg.bus_bits}-bit bulk port; the board top's SPRAM bulk "
                              f"memory needs a multiple of {CELL_WIDTH} bits: generate it "
                              f"with bulk_bits {CELL_WIDTH} or more")
        cells = bulk_cells(cfg.weight_depth * cfg.word_beats, cfg.bus_bits)
    if cfg.m_spram:
        rows, cols = spram_cells(cfg.fmap_depth, cfg.lanes * cfg.fmap_lane_bits)
        cells += rows * cols
    if cells > board.spram.blocks:
        what = " and ".join(name for name, on in (("bulk memory", not flash),
                                                  ("maps", cfg.m_spram)) if on)
        raise DynfixError(f"the engine in {design.folder} needs {cells} SPRAMs for its "
                          f"{what}; {board.name} has {board.spram.blocks}: generate a "
                          f"smaller engine")

def check_coding(design: Design, coding: FlashCoding, subject: str | None = None
                 ) -> FlashCoding:
    """``coding`` (a name or a :class:`~dynfix.boards.flash_image.FlashCoding`), raising a
    :class:`DynfixError` when ``design``'s engine has no flash image to code: one that
    keeps its weights in the bitstream, or reads them from the flash at run time. The
    message names the engine as ``subject`` (default: "the engine in" its folder)."""
    coding = FlashCoding.parse(coding)
    why = coding_refusal(bool(design.weight_load or design.bulk),
                         bool(design.bulk) and design.config.bulk_store is BulkStore.FLASH,
                         coding)
    if why:
        raise DynfixError(f"{subject or f'the engine in {design.folder}'} {why}")
    return coding


def board_pll(board: Board, clock_mhz: float | None) -> Ice40Pll | Ecp5Pll | None:
    """The PLL setting that clocks the design at the highest frequency the PLL reaches at or
    below ``clock_mhz`` (None: the board's oscillator, no PLL)."""
    if clock_mhz is None or clock_mhz == board.clock_mhz:
        return None
    return fastest_pll(board.family.name, board.clock_mhz, clock_mhz)


def check_flash(design: Design, board: Board) -> None:
    """Raise a :class:`DynfixError` when the engine of ``design`` loads its weights from
    flash (``w_spram``, ``w_bulk``) and ``board``'s file has no ``flash`` section."""
    if (design.weight_load or design.bulk) and board.flash is None:
        raise DynfixError(f"the engine in {design.folder} loads its weights from the SPI "
                          f"flash; {board.name}'s board file has no flash section: generate "
                          f"the engine for this board")


def uses_sdram(design: Design) -> bool:
    """The engine of ``design`` reads its weights (and maybe keeps maps) in SDRAM."""
    return design.bulk and design.config.bulk_store is BulkStore.SDRAM


def top_mhz(design: Design, board: Board) -> float:
    """The highest clock worth a first build: the board's ``max_mhz``, for an engine with
    its weights in SDRAM no faster than the SDRAM interface's timing allows
    (:func:`~dynfix.boards.sdram_clock.sdram_max_hz`)."""
    if uses_sdram(design) and board.sdram is not None:
        return min(board.max_mhz, sdram_max_hz(board.sdram.part) / 1e6)
    return board.max_mhz


def sdram_pll(design: Design, board: Board, pll: Ice40Pll | Ecp5Pll | None
              ) -> tuple[Ice40Pll | Ecp5Pll | None, SdramClock | None]:
    """For an engine with its weights in ``board``'s SDRAM: the PLL setting with the SDRAM
    clock's phase on its second output (a PLL at the oscillator's frequency when ``pll``
    is None) and that clock (:func:`~dynfix.boards.sdram_clock.sdram_clock`, which raises
    when the clock is too fast for the interface); otherwise ``(pll, None)``."""
    if not uses_sdram(design) or board.sdram is None:
        return pll, None
    if pll is None:
        pll = fastest_pll(board.family.name, board.clock_mhz, board.clock_mhz)
    if not isinstance(pll, Ecp5Pll):
        raise DynfixError(f"dynfix drives an SDRAM from ECP5 boards only, not {board.name}")
    clock = sdram_clock(board.sdram.part, pll.f_out * 1e6)
    return replace(pll, clkos_phase=clock.phase_deg), clock


def board_top(design: Design, board: Board, pll: Ice40Pll | Ecp5Pll | None = None,
              coding: FlashCoding = FlashCoding.NONE) -> BoardTop:
    """The board top around the generated engine, for ``board``'s UART and its clock (the
    oscillator, or ``pll``'s output); an engine with its weights in SPRAM loads them from
    the board's flash (at its ``flash.offset``) at power-up, SCK within the flash's read
    limit; one that reads them from bulk memory gets that memory in SPRAM or the board's
    SDRAM (clocked as :func:`sdram_pll` says), filled from the flash at power-up. With
    ``coding`` Huffman the flash image is coded and the load decodes it
    (:func:`check_coding`)."""
    info = link_info(design)
    check_link(EngineHostSignature(info.in_bits), info)     # before building anything
    coding = check_coding(design, coding)
    weights = weights_payload(design)
    check_spram(design, board)
    check_flash(design, board)
    if (weights is not None and coding is FlashCoding.NONE
            and len(weights) > payload_bytes(board.flash)):
        raise DynfixError(f"the weight image of the engine in {design.folder} is "
                          f"{len(weights)} bytes; {board.name}'s flash holds "
                          f"{payload_bytes(board.flash)} past offset "
                          f"{board.flash.offset:#x}: set flash.bytes in the board file if "
                          f"its part is larger")
    pll, _ = sdram_pll(design, board, pll)
    clk_hz = (pll.f_out if pll is not None else board.clock_mhz) * 1e6
    divisor = baud_divisor(clk_hz, board.baud)
    engine = engine_instance(design)
    return BoardTop(engine, info, divisor=divisor, board=board, weights=weights,
                    clk_hz=round(clk_hz), sck_div=sck_divider(clk_hz), pll=pll,
                    bulk_store=design.config.bulk_store, flash_coding=coding)


def add_flash_image(result: SynthResult, design: Design, build_dir: str | Path,
                    board: Board | None = None,
                    coding: FlashCoding = FlashCoding.NONE) -> None:
    """For an engine that loads its weights from flash (``w_spram``, or ``w_bulk``: its bulk
    memory's image): write ``build_dir/weights.flash.bin`` sized for ``board``'s flash
    (:func:`~dynfix.boards.flash_image.write_flash_files`), stored with ``coding``, and
    record it in ``result`` with the two commands that program the board, run in
    ``build_dir``: the board's bitstream command (at 0), then its first image command (the
    weights at ``flash.offset``); for a coded image also what its load takes at the
    bitstream's clock (``result.flash``,
    :func:`~dynfix.boards.flash_image.load_figures`). Without ``board``: the bundled board
    named ``result.board``, else (a board file of the user's) the iCEBreaker's flash,
    :data:`~dynfix.boards.flash_image.DEFAULT_FLASH`."""
    coding = check_coding(design, coding)
    payload = weights_payload(design)
    if payload is None:
        return
    if board is None and (BOARDS_DIR / f"{result.board}.yaml").is_file():
        board = get_board(result.board)
    flash = DEFAULT_FLASH
    if board is not None:
        check_flash(design, board)
        flash = board.flash
    commands = write_flash_files(build_dir, payload, flash, coding)
    result.flash_image = str(Path(build_dir) / FILE_NAME)
    if coding is not FlashCoding.NONE:
        clk_hz = result.clock_mhz * 1e6
        result.flash = load_figures(payload, coding, clk_hz, sck_divider(clk_hz))
    result.program = [bitstream_command(Path(result.bitstream).name, flash), commands[0]]
