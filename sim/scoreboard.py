"""Scoreboard: the hardware's integers against the integer model's, image by image."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Difference:
    """The first value of a map that differs: its layer, C/H/W coordinates and both values."""

    layer: str
    coords: tuple[int, ...]
    got: int
    want: int

    def __str__(self) -> str:
        at = ", ".join(map(str, self.coords))
        return f"layer {self.layer!r} at [{at}]: hardware {self.got}, integer model {self.want}"


@dataclass
class Scoreboard:
    """Collects per-image results and compares each with the reference outputs."""

    expected: np.ndarray                         # N x L integers (the integer model)
    outputs: list[list[int]] = field(default_factory=list)

    def add(self, outputs: list[int]) -> None:
        self.outputs.append(list(outputs))

    @property
    def got(self) -> np.ndarray:
        return np.array(self.outputs, dtype=np.int64).reshape(len(self.outputs), -1)

    def mismatches(self) -> list[int]:
        """Indices of the images whose outputs differ from the reference in any value."""
        got, want = self.got, self.expected[:len(self.outputs)]
        if got.shape != want.shape:
            return list(range(len(self.outputs)))
        return [int(i) for i in np.nonzero((got != want).any(axis=1))[0]]


def first_difference(layer: str, got, want: np.ndarray) -> Difference | None:
    """The first differing value (C, H, W order) of one image's map ``want``, or None.

    ``got`` is the flat hardware stream; a short stream differs at its end."""
    want = np.asarray(want)
    flat_w = want.reshape(-1)
    flat_g = np.asarray(got, dtype=np.int64).reshape(-1)
    n = min(len(flat_g), len(flat_w))
    diff = np.nonzero(flat_g[:n] != flat_w[:n])[0]
    if len(diff):
        i = int(diff[0])
    elif len(flat_g) != len(flat_w):
        i = n
    else:
        return None
    coords = tuple(int(c) for c in np.unravel_index(min(i, len(flat_w) - 1), want.shape))
    g = int(flat_g[i]) if i < len(flat_g) else None
    w = int(flat_w[i]) if i < len(flat_w) else None
    return Difference(layer, coords, g, w)
