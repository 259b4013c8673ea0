"""A ``dynfix generate`` output folder as a board design: the engine Verilog behind the
board top's UART link."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
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
from dynfix.hw.config import EngineConfig
from dynfix.hw.host_interface import EngineHostSignature


@dataclass(frozen=True)
class Generated:
    """What ``DIR/report.json`` says about the generated engine."""

    folder: Path
    report: dict
    verilog: Path
    info: LinkInfo

    @property
    def engine(self) -> dict:
        return self.report["engine"]

    @cached_property
    def config(self) -> EngineConfig:
        """The engine's configuration."""
        return EngineConfig.from_report(self.engine, where=f"{self.folder}/report.json engine")

    @property
    def weight_load(self) -> bool:
        """The engine keeps its weights in SPRAM: the board top loads them from flash."""
        return bool(self.engine.get("w_spram"))

    @cached_property
    def weights_payload(self) -> bytes | None:
        """The flash payload of an engine that loads its weights (``w_spram``):
        ``weights.hex`` padded to the memory's depth, as halfwords (:func:`weight_payload`);
        None otherwise. Read once: the board top and the flash image both use it."""
        if not self.weight_load:
            return None
        path = self.folder / "weights.hex"
        try:
            words = [int(tok, 16) for tok in path.read_text().split()]
        except (OSError, ValueError) as e:
            raise DynfixError(f"{self.folder}: cannot read the weights for the flash image "
                              f"({e}); re-run dynfix generate") from None
        cfg = self.config
        return weight_payload(words, cfg.weight_depth, cfg.weight_word_bits)


def load_generated(folder: str | Path) -> Generated:
    """Read ``DIR/report.json`` and check the Verilog is there."""
    folder = Path(folder)
    rep_path = folder / "report.json"
    if not rep_path.is_file():
        raise DynfixError(f"{folder} is not a dynfix generate output (no report.json); "
                          f"generate the design for the board into it first (dynfix.generate, "
                          f"or the generate command)")
    try:
        rep = json.loads(rep_path.read_text())
        top, eng = rep["top"], rep["engine"]
        n_in = 1
        for d in rep["input_shape"]:
            n_in *= int(d)
        info = LinkInfo(n_in=n_in, n_out=int(rep["output"]["values"]),
                        in_bits=int(eng["data_bits"]), out_bits=int(eng["data_bits"]))
    except (ValueError, KeyError, TypeError) as e:
        raise DynfixError(f"{rep_path}: not a dynfix generate report ({e})") from None
    verilog = folder / f"{top}.v"
    if not verilog.is_file():
        raise DynfixError(f"{folder}: {verilog.name} is missing; re-run dynfix generate")
    return Generated(folder, rep, verilog, info)


def board_pll(board: Board, clock_mhz: float | None) -> Ice40Pll | Ecp5Pll | None:
    """The PLL setting that clocks the design at the highest frequency the PLL reaches at or
    below ``clock_mhz`` (None: the board's oscillator, no PLL)."""
    if clock_mhz is None or clock_mhz == board.clock_mhz:
        return None
    return fastest_pll(board.family.name, board.clock_mhz, clock_mhz)


def board_top(gen: Generated, board: Board, pll: Ice40Pll | Ecp5Pll | None = None) -> BoardTop:
    """The board top around the generated engine, for ``board``'s UART and its clock (the
    oscillator, or ``pll``'s output); an engine with its weights in SPRAM loads them from
    the board's flash at power-up, SCK within the flash's read limit."""
    check_link(EngineHostSignature(gen.info.in_bits), gen.info)   # before building anything
    weights = gen.weights_payload
    if weights is not None and board.spram is None:
        raise DynfixError(f"the engine in {gen.folder} keeps its weights in iCE40 SPRAM; "
                          f"{board.name} has none: generate the engine for this board")
    clk_hz = (pll.f_out if pll is not None else board.clock_mhz) * 1e6
    divisor = baud_divisor(clk_hz, board.baud)
    engine = EngineInstance(gen.verilog, gen.info.in_bits, gen.report["top"],
                            weight_load=gen.weight_load)
    return BoardTop(engine, gen.info, divisor=divisor, board=board, weights=weights,
                    clk_hz=round(clk_hz), sck_div=sck_divider(clk_hz), pll=pll)


def add_flash_image(result: SynthResult, gen: Generated, build_dir: str | Path) -> None:
    """For an engine that loads its weights from flash: write ``build_dir/weights.flash.bin``
    (:func:`~dynfix.boards.flash_image.write_flash_files`) and record it in ``result`` with
    the two commands that program the board, run in ``build_dir``: the bitstream at 0, then
    the weights at 1 MiB."""
    payload = gen.weights_payload
    if payload is None:
        return
    commands = write_flash_files(build_dir, payload)
    result.flash_image = str(Path(build_dir) / FILE_NAME)
    result.program = [f"iceprog {Path(result.bitstream).name}", commands[0]]
