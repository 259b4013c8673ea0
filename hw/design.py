"""A generated design: the folder ``dynfix generate`` writes, as one object.

The folder holds the engine's Verilog, its memory images, ``report.json`` and the model and
quantization it was compiled from (``model.yaml`` + ``Q.yaml``). :class:`Design` is the one
type every later stage takes: simulation (``dynfix.sim``), the board top and synthesis
(``dynfix.boards``) and the API (``dynfix.generate`` returns one). It reads ``report.json``
once and gives its figures as typed attributes, so no caller looks keys up itself; the
model, spec and compiled model behind the Verilog are there when the design was just
generated, or loaded on request (:meth:`Design.with_model`, which recompiles and checks the
result against the folder's images).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from dynfix.errors import DynfixError
from dynfix.quant.ir import Model
from dynfix.quant.qspec import QuantSpec
from .compiler import CompiledModel, compile_model
from .config import EngineConfig
from .generate import memory_images

__all__ = ["Design", "MODEL_FILES"]

#: What a folder needs beyond ``report.json`` and the Verilog for :meth:`Design.with_model`.
MODEL_FILES = ("program.hex", "weights.hex", "biases.hex", "model.yaml", "Q.yaml")


@dataclass
class Design:
    """A ``dynfix generate`` output folder: ``report.json`` as written (``report``), and, when
    known, the model, spec and compiled model behind the Verilog."""

    folder: Path
    report: dict[str, Any] = field(repr=False)
    model: Model | None = field(default=None, repr=False)
    spec: QuantSpec | None = field(default=None, repr=False)
    compiled: CompiledModel | None = field(default=None, repr=False)

    @classmethod
    def load(cls, folder: str | Path) -> Design:
        """Read ``folder/report.json`` and check that it is a generate report and that the
        Verilog it names is there."""
        folder = Path(folder)
        if not folder.is_dir():
            raise DynfixError(f"{str(folder)!r} is not a folder (expected the output of "
                              f"dynfix generate)")
        path = folder / "report.json"
        if not path.is_file():
            raise DynfixError(f"{folder} is not a dynfix generate output (no report.json); "
                              f"generate the design into it first (dynfix.generate, or the "
                              f"generate command)")
        try:
            design = cls(folder, json.loads(path.read_text()))
            design.check_report()
        except (ValueError, KeyError, TypeError) as e:
            raise DynfixError(f"{path}: not a dynfix generate report "
                              f"({type(e).__name__}: {e})") from None
        if not design.verilog.is_file():
            raise DynfixError(f"{folder}: {design.verilog.name} is missing; re-run dynfix "
                              f"generate")
        return design

    def check_report(self) -> None:
        """Raise ``KeyError``/``ValueError``/``TypeError`` unless the report has what the
        attributes read."""
        _ = (self.top, self.config, self.input_values, self.output_values, self.data_bits)

    def with_model(self) -> Design:
        """This design with its model, spec and compiled model: loaded from ``model.yaml``
        and ``Q.yaml`` and compiled for the report's engine, the program and memory images
        checked against the folder's (so the integer reference is the one the Verilog was
        built from). Returns ``self`` if they are there already."""
        if self.compiled is not None:
            return self
        from dynfix.quant.qspec_io import load_qspec
        from dynfix.quant.yaml_io import load_yaml

        folder = self.folder
        missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
        if missing:
            hint = (" (generated before dynfix generate wrote the model; re-run it)"
                    if set(missing) <= {"model.yaml", "Q.yaml"} else "")
            raise DynfixError(f"{folder} is not a generated design: missing "
                              f"{', '.join(missing)}{hint}")
        model = load_yaml(folder / "model.yaml")
        spec = load_qspec(folder / "Q.yaml", model)
        cm = compile_model(model, spec, self.config)
        for name, text in memory_images(cm).items():
            if (folder / name).read_text() != text:
                raise DynfixError(f"{folder}/{name} does not match model.yaml + Q.yaml "
                                  f"compiled for the report's engine; the folder was edited "
                                  f"or mixed up")
        return replace(self, model=model, spec=spec, compiled=cm)

    # --- what report.json says ---------------------------------------------------------

    @property
    def top(self) -> str:
        """The engine's Verilog module name."""
        return str(self.report["top"])

    @property
    def verilog(self) -> Path:
        return self.folder / f"{self.top}.v"

    @property
    def board(self) -> str | None:
        """The bundled board the engine was fitted to, if ``generate`` was given one."""
        board = self.report.get("board")
        return board if isinstance(board, str) else None

    @cached_property
    def config(self) -> EngineConfig:
        """The engine's configuration (the compiled model's, else the report's)."""
        if self.compiled is not None:
            return self.compiled.config
        return EngineConfig.from_report(self.report["engine"],
                                        where=f"{self.folder}/report.json engine")

    @property
    def engine(self) -> dict[str, Any]:
        """The report's engine section (the configuration and its derived figures)."""
        return self.report["engine"]

    @property
    def estimate(self) -> dict[str, Any]:
        """The cycle model's figures (per layer and per image)."""
        return self.report["estimate"]

    @property
    def cycles_per_image(self) -> int:
        """Cycle-model estimate: compute plus streaming the image in and the outputs out."""
        return int(self.estimate["cycles_per_image"])

    @property
    def multipliers(self) -> int:
        """Products per cycle."""
        return int(self.engine["multipliers"])

    @property
    def input_values(self) -> int:
        """Values the host streams in per image (the input shape's size)."""
        return math.prod(int(d) for d in self.report["input_shape"])

    @property
    def output_values(self) -> int:
        """Values the engine streams out per image."""
        return int(self.report["output"]["values"])

    @property
    def data_bits(self) -> int:
        """Width of the values streamed in and out."""
        return int(self.engine["data_bits"])

    @property
    def weight_load(self) -> bool:
        """The engine keeps its weights in SPRAM: they are loaded at power-up."""
        return bool(self.engine.get("w_spram"))

    @property
    def bulk(self) -> bool:
        """The engine reads its weights from bulk memory (``w_bulk``): the memory around it
        holds them (the board top fills it at power-up)."""
        return bool(self.engine.get("w_bulk"))

    def to_json(self) -> dict[str, Any]:
        """``report.json``'s content."""
        return self.report
