"""Data sets reachable by name, and loading of user data files.

``digits`` is scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes; it ships
inside scikit-learn, nothing is downloaded). Pixels 0..16 are scaled to [0, 1] and shaped
N x 1 x 8 x 8 (float32). The split is fixed: a permutation with seed 0 puts the first 360
images in ``test``, the next 360 in ``calib`` and the remaining 1077 in ``train``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dynfix.errors import DynfixError

SPLITS = ("train", "calib", "test")
DIGITS_SEED = 0
DIGITS_TEST = 360
DIGITS_CALIB = 360


def load_digits(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """The ``digits`` split as ``(x, y)``: float32 N x 1 x 8 x 8 in [0, 1], int64 labels."""
    if split not in SPLITS and split != "all":
        raise DynfixError(f"unknown digits split {split!r}; choose one of {', '.join(SPLITS)}")
    # Deferred: scikit-learn takes about a second to import and only this loader needs it.
    from sklearn.datasets import load_digits as sk_digits
    d = sk_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    if split == "all":
        return x, y
    perm = np.random.default_rng(DIGITS_SEED).permutation(len(y))
    parts = {"test": perm[:DIGITS_TEST],
             "calib": perm[DIGITS_TEST:DIGITS_TEST + DIGITS_CALIB],
             "train": perm[DIGITS_TEST + DIGITS_CALIB:]}
    idx = parts[split]
    return x[idx], y[idx]


def load_data(spec: str, split: str = "test", need_labels: bool = True
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """Resolve a ``--data``/``--calib`` argument: ``digits``, ``X.npy`` or ``D.npz``.

    An ``.npz`` holds ``x`` (float32, N x ...) and ``y`` (integer labels); an ``.npy`` holds
    inputs only. Shapes are checked against the model by the caller.
    """
    if spec == "digits":
        return load_digits(split)
    path = Path(spec)
    if not path.is_file():
        raise DynfixError(f"data {spec!r} is neither 'digits' nor an existing .npy/.npz file")
    try:
        if path.suffix == ".npy":
            x, y = np.load(path, allow_pickle=False), None
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                if "x" not in f:
                    raise DynfixError(f"{path.name}: an .npz data file needs an array 'x' "
                                      f"(and 'y' for labels); it has {sorted(f.files)}")
                x = f["x"]
                y = f["y"] if "y" in f else None
        else:
            raise DynfixError(f"data file {path.name}: expected .npy or .npz")
    except DynfixError:
        raise
    except Exception as e:  # numpy raises many types for corrupt files
        raise DynfixError(f"cannot read data file {path.name}: {e}") from None
    if x.dtype.kind not in "fiu":
        raise DynfixError(f"{path.name}: inputs have dtype {x.dtype}; expected numbers")
    if need_labels:
        if y is None:
            raise DynfixError(f"{path.name}: no labels; an .npz with arrays 'x' and 'y' is "
                              f"needed here")
        if y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != len(x):
            raise DynfixError(f"{path.name}: 'y' must be {len(x)} integer labels, got "
                              f"{y.dtype} {y.shape}")
    return x.astype(np.float32), (None if y is None else y.astype(np.int64))
