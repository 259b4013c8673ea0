"""A ``dynfix generate`` output folder as a board design: the engine Verilog behind the
board top's UART link."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dynfix.boards.board_top import BoardTop, check_link
from dynfix.boards.engine_instance import EngineInstance
from dynfix.boards.protocol import LinkInfo
from dynfix.boards.registry import Board
from dynfix.boards.uart_tx import baud_divisor
from dynfix.errors import DynfixError
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


def load_generated(folder: str | Path) -> Generated:
    """Read ``DIR/report.json`` and check the Verilog is there."""
    folder = Path(folder)
    rep_path = folder / "report.json"
    if not rep_path.is_file():
        raise DynfixError(f"{folder} is not a dynfix generate output (no report.json); run "
                          f"dynfix generate MODEL --quant Q.yaml --board NAME --output "
                          f"{folder}")
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


def board_top(gen: Generated, board: Board) -> BoardTop:
    """The board top around the generated engine, for ``board``'s clock and UART."""
    check_link(EngineHostSignature(gen.info.in_bits), gen.info)   # before building anything
    if gen.engine.get("w_spram"):
        raise DynfixError(f"the engine in {gen.folder} keeps its weights in SPRAM, which the "
                          f"bitstream cannot initialize, and this board top does not load "
                          f"them from flash yet; generate it with w_spram: 0 (a smaller "
                          f"engine, or fewer weight bits)")
    divisor = baud_divisor(board.clock_mhz * 1e6, board.baud)
    engine = EngineInstance(gen.verilog, gen.info.in_bits, gen.report["top"])
    return BoardTop(engine, gen.info, divisor=divisor, board=board)
