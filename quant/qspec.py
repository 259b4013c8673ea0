"""The quantization result: the fixed-point formats of every layer that makes a new format
(what ``Q.yaml`` holds).

Two kinds of layers produce a feature map in a format of their own, chosen by the quantizer:

* a *compute layer* (Conv2d, Linear, Affine) has a :class:`LayerFormat`: weights, bias,
  accumulator and output formats;
* an *Add* has an :class:`AddFormat`: its output format, and the formats of its two inputs
  (recorded to check the spec against the model, like a compute layer's ``fl_in``).

Every other layer (ReLU, Clip, pooling, flatten, softmax) keeps the format of its input, so a
tensor's format is that of the nearest producing layer above it (or the input format).

Conventions (see ``docs/arithmetic.md``):

* ``fl_in`` / ``bw_in`` of a layer equal the format of the tensor it reads
  (``QuantSpec.input_fl`` / ``input_bw`` for the model input);
* ``bias_shift = fl_in + fl_w - fl_b >= 0`` (the bias is shifted left into the accumulator);
* ``data_shift = fl_in + fl_w - fl_out`` for a compute layer, ``max(fl_in) - fl_out`` for an
  Add (right if positive, left if negative);
* ``bw_x`` is the width of the layer's *output* feature map;
* ``rounding`` is how the data shift rounds: ``half_up`` (default) or ``half_even``;
* per-channel weight formats (``ch_fl``, optional): output channel ``m`` of a compute layer
  has its weights at ``fl_w + ch_fl[m]`` and its bias at ``fl_b + ch_fl[m]`` (so the bias
  shift is the layer's) and its data shift is ``data_shift + ch_fl[m]``; an empty
  ``ch_fl`` is all zeros (one weight format per layer, as in the paper).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .fixed import HALF_UP


@dataclass
class LayerFormat:
    """Formats of a compute layer (Conv2d, Linear, Affine)."""

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
    #: Per output channel, how much finer than ``fl_w`` its weights are (>= 0; empty: all
    #: 0). The channel's bias is as much finer than ``fl_b`` and its data shift as much
    #: larger than ``data_shift`` (see the module docstring).
    ch_fl: tuple[int, ...] = ()
    #: Offsets of the map read and of the output map (``(q - zp) * 2**-fl``, a bw-bit
    #: integer; 0: signed, ``-2**(bw-1)``: unsigned, else centred). ``zp_in`` is the read
    #: map's, checked like ``fl_in``.
    zp_in: int = 0
    zp_out: int = 0
    #: How the data shift rounds: ``half_up`` (the default) or ``half_even``
    #: (``fixed.ROUNDING_MODES``; a QONNX ``ROUND`` Quant's).
    rounding: str = HALF_UP
    #: Weight sharing (``quant/weight_sharing.py``): the index bits of the codebook that
    #: chose the layer's weights (its integers take at most ``2**share`` values), which an
    #: engine may store as indices (``EngineConfig.w_index_bits``); 0: not shared.
    share: int = 0

    op: ClassVar[str] = "compute"

    @property
    def bias_shift(self) -> int:
        return self.fl_in + self.fl_w - self.fl_b

    @property
    def data_shift(self) -> int:
        """The data shift of a channel at ``fl_w`` (every channel without ``ch_fl``)."""
        return self.fl_in + self.fl_w - self.fl_out

    def offsets(self, channels: int) -> np.ndarray:
        """``ch_fl`` as an int64 vector of ``channels`` (zeros when per layer)."""
        if not self.ch_fl:
            return np.zeros(channels, np.int64)
        return np.asarray(self.ch_fl, np.int64)

    def data_shifts(self, channels: int) -> np.ndarray:
        """The data shift of every output channel."""
        return self.data_shift + self.offsets(channels)


@dataclass
class AddFormat:
    """Formats of an Add: inputs ``(bw_in[i], fl_in[i])``, output ``(bw_x, fl_out)``.

    Both inputs are aligned to ``fl_sum = max(fl_in)`` by exact left shifts and added in
    ``sum_bits`` bits; the sum is requantized by ``data_shift = fl_sum - fl_out`` to bw_x.
    """

    name: str
    bw_in: tuple[int, int]
    fl_in: tuple[int, int]
    bw_x: int
    fl_out: int
    # Calibration statistics (informational; not part of the arithmetic).
    sqnr_db: float | None = None
    saturated: int | None = None
    zp_in: tuple[int, int] = (0, 0)     # offsets of the two maps read (checked)
    zp_out: int = 0
    rounding: str = HALF_UP             # how the data shift rounds (as a LayerFormat's)

    op: ClassVar[str] = "add"

    @property
    def fl_sum(self) -> int:
        """Binary point of the exact sum: the finer of the two inputs."""
        return max(self.fl_in)

    @property
    def align(self) -> tuple[int, int]:
        """Left shift of each input onto ``fl_sum`` (>= 0; 0 for the finer input)."""
        return tuple(self.fl_sum - f for f in self.fl_in)

    @property
    def sum_bits(self) -> int:
        """Width of the exact sum: the wider aligned input plus a carry bit."""
        return max(b + s for b, s in zip(self.bw_in, self.align)) + 1

    @property
    def data_shift(self) -> int:
        return self.fl_sum - self.fl_out


Format = LayerFormat | AddFormat


#: Allowed values of the :class:`QuantOptions` fields that are choices.
OPTION_CHOICES = {"criterion": ("l1", "mse"), "start": ("max", "percentile"),
                  "rounding": ("nearest", "adaptive"),
                  "objective": ("auto", "agreement", "sqnr")}


@dataclass(frozen=True)
class QuantOptions:
    """What the greedy search does beyond the paper's two phases (docs/quantization.md).

    Most of them change which formats, and (``equalize``, ``bias_correction``, ``rounding``)
    which integer weights and biases, are chosen, within the paper's arithmetic;
    ``unsigned`` also uses map offsets and ``per_channel`` per-channel weight formats, both
    part of the arithmetic (``docs/arithmetic.md``). All off (the defaults here) is the paper's greedy, method
    ``greedy-paper``; ``search.GREEDY`` is what method ``greedy`` turns on.
    """

    equalize: bool = False         # also try cross-layer equalized weights, keep the better
    criterion: str = "l1"          # error the weight and data phases minimize: l1 | mse
    start: str = "max"             # data-phase window: around max|v| | also around a percentile
    bias_correction: bool = False  # shift each bias by the mean pre-activation error
    rounding: str = "nearest"      # weights to nearest | adaptive (floor/ceil by output error)
    refine: bool = False           # coordinate descent of the fl choices on the output
    per_channel: bool = False      # a weight fl per output channel (a shift per channel)
    unsigned: bool = False         # maps that cannot be negative stored unsigned
    asymmetric: bool = False       # other maps: an offset centring their calibration range
    fill: bool = False             # also try maps rescaled to fill their formats' ranges
    headroom: bool = False         # map formats with headroom past calibration maxima
    unclipped_weights: bool = False  # weight formats end at the overflow-free fl
    objective: str = "auto"        # what refine and the choice against the paper maximize

    def __post_init__(self):
        for key, allowed in OPTION_CHOICES.items():
            if getattr(self, key) not in allowed:
                raise DynfixError(f"option {key}={getattr(self, key)!r}: choose one of "
                                  f"{', '.join(allowed)}")
        for key in ("equalize", "bias_correction", "refine", "per_channel", "unsigned",
                    "asymmetric", "fill", "headroom", "unclipped_weights"):
            if not isinstance(getattr(self, key), bool):
                raise DynfixError(f"option {key} must be true or false, got "
                                  f"{getattr(self, key)!r}")

    @property
    def is_paper(self) -> bool:
        """True when nothing beyond the paper is on (the objective is then unused)."""
        return replace(self, objective="auto") == QuantOptions()

    @property
    def adjusts_params(self) -> bool:
        """True when the search may choose integer weights/biases other than the nearest
        rounding of the model's own (the result then comes with an adjusted model)."""
        return self.equalize or self.bias_correction or self.rounding != "nearest"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "options") -> "QuantOptions":
        """Options from a mapping of (some of) their names to values; the rest default."""
        names = [f.name for f in fields(cls)]
        extra = [str(k) for k in d if k not in names] if isinstance(d, dict) else []
        if extra or not isinstance(d, dict):
            what = f"unknown option(s) {', '.join(extra)}" if extra else "expected a mapping"
            raise DynfixError(f"{where}: {what}; the options are {', '.join(names)}")
        return cls(**d)


@dataclass
class QuantSpec:
    model: str
    method: str
    bits: str
    input_bw: int
    input_fl: int
    layers: dict[str, Format] = field(default_factory=dict)
    #: The input map's offset (``qmin(input_bw)``: the input is unsigned).
    input_zp: int = 0
    #: What the host multiplies the input by before quantizing it, and divides the output
    #: by after dequantizing it: the scales of a range-filled model (quant/fill.py).
    input_scale: float = 1.0
    output_scale: float = 1.0
    #: The greedy search's additions (None for greedy-paper, range and static).
    options: QuantOptions | None = None
    #: Float parameters replacing the model's own, by layer name then parameter name
    #: (``weight``/``bias``, ``scale``/``shift``): what bias correction, adaptive rounding
    #: and weight sharing chose (their nearest rounding gives the chosen integers). Empty
    #: otherwise.
    params: dict = field(default_factory=dict, repr=False, compare=False)
