"""The quantization result: per compute layer fixed-point formats (what ``Q.yaml`` holds).

A *compute layer* is a Conv2d, Linear or Affine layer. Parameter-free layers (ReLU, pooling,
flatten) keep the fractional length of their input, so a feature map's format is that of the
compute layer that produced it (or the input format before the first one).

Conventions (see ``docs/arithmetic.md``):

* ``fl_in`` of a compute layer equals ``fl_out`` of the compute layer before it (or
  ``QuantSpec.input_fl`` for the first one);
* ``bias_shift = fl_in + fl_w - fl_b >= 0`` (the bias is shifted left into the accumulator);
* ``data_shift = fl_in + fl_w - fl_out`` (right if positive, left if negative);
* ``bw_x`` is the width of this layer's *output* feature map; its input has the previous
  layer's ``bw_x`` (``QuantSpec.input_bw`` for the first).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LayerFormat:
    name: str
    bw_w: int
    fl_w: int
    bw_b: int
    fl_b: int
    bw_in: int
    fl_in: int
    bw_x: int
    fl_out: int
    acc_bits: int
    # Calibration statistics (informational; not part of the arithmetic).
    sqnr_db: float | None = None
    saturated: int | None = None

    @property
    def bias_shift(self) -> int:
        return self.fl_in + self.fl_w - self.fl_b

    @property
    def data_shift(self) -> int:
        return self.fl_in + self.fl_w - self.fl_out


@dataclass
class QuantSpec:
    model: str
    method: str
    bits: str
    input_bw: int
    input_fl: int
    layers: dict[str, LayerFormat] = field(default_factory=dict)
