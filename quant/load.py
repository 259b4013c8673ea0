"""One entry point for every model argument: an ``.onnx`` file, a ``.yaml`` file or a name.

``digits`` names the bundled default model (``dynfix/data/digits.onnx``, a small CNN trained
on scikit-learn's digits by ``tools/train_digits.py``); ``digits-edge`` the bundled example of
the edge layers (``dynfix/data/digits_edge.onnx``: a residual Add, a depthwise conv, ReLU6 and
a global average pool, trained on the same data by ``tools/train_digits_edge.py``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from dynfix.errors import DynfixError
from .ir import Model
from .onnx import load_onnx
from .yaml_io import load_yaml

#: Models shipped inside the package, by name -> file in ``dynfix/data``.
BUNDLED = {"digits": "digits.onnx", "digits-edge": "digits_edge.onnx"}


def bundled_path(name: str) -> Path:
    """Path of a bundled model file (the package is installed from a folder, not a zip)."""
    ref = resources.files("dynfix.data").joinpath(BUNDLED[name])
    path = Path(str(ref))
    if not path.is_file():
        raise DynfixError(f"the bundled model {name!r} is missing from the installation "
                          f"({BUNDLED[name]}); run tools/train_{Path(BUNDLED[name]).stem}.py")
    return path


def load_model(spec: str) -> Model:
    """Load a model from an ``.onnx`` path, a dynfix ``.yaml`` path, or a bundled name."""
    if spec in BUNDLED:
        return load_onnx(bundled_path(spec))
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return load_onnx(path)
    if suffix in (".yaml", ".yml"):
        return load_yaml(path)
    if not path.exists():
        raise DynfixError(f"model {spec!r} not found: give an .onnx or .yaml file, or one of "
                          f"the bundled names ({', '.join(BUNDLED)})")
    raise DynfixError(f"model {spec!r}: unknown file type {suffix or '(none)'!r}; expected "
                      f".onnx or .yaml")
