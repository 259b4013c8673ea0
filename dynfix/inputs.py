"""Turning what a user names into loaded objects: models, data, specs, boards, engine configs.

The API (:mod:`dynfix.api`), the flow (:mod:`dynfix.workflow`) and the commands all take the
same arguments (a model path or bundled name, ``digits`` or a ``D.npz``, a ``Q.yaml``, a board
name or file) and fail on them with the same one-line :class:`DynfixError`; this module is the
one place that does it, below all three.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dynfix.boards.registry import Board, get_board as _get_board
from dynfix.errors import DynfixError, literal
from dynfix.hw.config import EngineConfig
from dynfix.quant.datasets import load_data
from dynfix.quant.ir import Model
from dynfix.quant.load import load_model as _load_model
from dynfix.quant.qspec import QuantSpec
from dynfix.quant.qspec_io import load_qspec

ModelLike = str | Path | Model
DataLike = str | Path | np.ndarray


def load_model(model: ModelLike) -> Model:
    """An ``.onnx`` or ``.yaml`` path, a bundled name (``digits``) or a loaded model."""
    return model if isinstance(model, Model) else _load_model(str(model))


def load_inputs(data: DataLike, split: str = "test", labels: bool = False
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """``digits`` (its ``split``), an ``X.npy``/``D.npz`` path, or an array of inputs, as
    the data holds them: in the model's own layout (``Model.input_layout``, e.g.
    N x H x W x C for a Keras model), which the model turns into its channels-first input
    where it takes the data (:func:`dynfix.quant.float_model.check_input`)."""
    if isinstance(data, np.ndarray):
        return data.astype(np.float32), None
    return load_data(str(data), split=split, need_labels=labels)


def check_data_fits(model: Model, data: DataLike, what: str = "data",
                    option: str = "data") -> None:
    """Fail early, with a hint, when the bundled digits images do not fit ``model``
    (``option``: the caller's argument that takes the data)."""
    if isinstance(data, str) and data == "digits" and tuple(model.data_shape) != (1, 8, 8):
        shape = "x".join(map(str, model.data_shape))
        layout = f" ({model.input_layout})" if model.input_layout != "NCHW" else ""
        raise DynfixError(f"model {literal(repr(model.name))} takes {shape}{layout} inputs "
                          f"but the digits images are 1x8x8: pass your own {what} "
                          f"({{{option}}} D.npz with arrays x, y)", (option,))


def load_spec(model: Model, quant: QuantSpec | str | Path) -> QuantSpec:
    """A quantization spec as is, or read from a ``Q.yaml`` path and checked against
    ``model``."""
    return quant if isinstance(quant, QuantSpec) else load_qspec(str(quant), model)


def get_board(board: Any = None) -> Board:
    """A board by name, by board-file path, or as is; ``None`` is the default board."""
    return board if isinstance(board, Board) else _get_board(None if board is None
                                                             else str(board))


def engine_config(config: EngineConfig | dict | str | Path) -> EngineConfig:
    """An engine configuration as is, from a dict of k, tn, tm (and optional bounds), or
    from an ``engine.yaml`` file (``dynfix boards --fit --write``)."""
    if isinstance(config, EngineConfig):
        return config
    if isinstance(config, dict):
        return EngineConfig.from_dict(config)
    try:
        with open(config) as f:
            d = yaml.safe_load(f)
    except OSError as e:
        raise DynfixError(f"cannot read engine config {config}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise DynfixError(f"engine config {config} is not valid YAML: "
                          f"{str(e).splitlines()[0]}") from None
    return EngineConfig.from_dict(d or {}, where=f"engine config {config}")
