"""Range fill: scale feature maps so their calibrated range fills a power-of-two format.

A dynamic fixed-point map holds ``[0, (2**bw - 1) * 2**-fl]`` (unsigned), ``+-(2**(bw-1) -
1) * 2**-fl`` (signed, or around a centre with an offset): a range whose size is a power of
two. A map whose values reach ``r`` uses only ``r / top`` of the nearest format's steps, on
average three quarters (a ReLU6 map, ``[0, 6]``, uses 6/8 of an unsigned map's steps at
``fl = 5``). int8 runtimes avoid this with a float scale per map; the engine has only shifts.

Instead the *float model* is rescaled, exactly: a map ``y`` made by compute layer ``P`` and
read by compute layers ``C1, C2, ...`` (through ReLU, Clip, max / average pooling, flatten,
which commute with a positive scale once a Clip's bounds are scaled too) becomes ``c * y``
by multiplying P's weights and bias by ``c`` and dividing every ``Ci``'s weights by ``c``;
the network computes the same function. ``c`` in ``[1, 2)`` is chosen so that the map's
calibrated threshold lands exactly on a format's top: the largest value for the paper's
overflow-free start, or the threshold minimizing the quantization error on the calibration
values (what the search's criterion then prefers). The integer arithmetic and the engine are
unchanged: only other weights and biases (and Clip bounds) are quantized.

The network's input and output have no layer to absorb the scale: the host does. The input
is multiplied by ``input_scale`` before it is quantized, the output divided by
``output_scale`` after it is dequantized (``QuantSpec.input_scale`` / ``output_scale``,
``IntModel.quantize_input`` / ``dequantize``), both in float on the host, as an int8
runtime's float scales are. Maps next to an Add keep their scale (both operands of the
engine's residual add must share a format).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import fixed
from .int_model import is_compute
from .ir import Layer, Model

#: Thresholds tried below the largest value (fractions of it, geometric).
THRESHOLDS = np.geomspace(0.25, 1.0, 49)
#: At most this many calibration values are scored per map (a fixed random subset).
MAX_VALUES = 1 << 17


@dataclass
class Region:
    """One scale's reach: the compute layer that makes the map (None: the network input),
    the parameter-free layers it flows through, the compute layers that read it and whether
    it is the network's output."""

    producer: Layer | None
    passes: list[Layer] = field(default_factory=list)
    readers: list[Layer] = field(default_factory=list)
    output: bool = False


@dataclass
class Filled:
    """The rescaled model and the host's scales; ``scales``: the ``c`` of each map by the
    name of the layer (or input) that makes it."""

    model: Model
    input_scale: float = 1.0
    output_scale: float = 1.0
    scales: dict[str, float] = field(default_factory=dict)


def region(model: Model, tensor: str) -> Region | None:
    """What scaling ``tensor`` (a compute layer's output, or the input) reaches; None when a
    scale cannot pass (an Add, or a Softmax that is not the last layer)."""
    producer = None if tensor == model.input_name else model.layer(tensor)
    r = Region(producer)
    todo = [tensor]
    while todo:
        t = todo.pop()
        if t == model.output_name:
            r.output = True
        for c in model.consumers(t):
            if is_compute(c):
                r.readers.append(c)
            elif c.homogeneous or c.scalars or (c.host and c.name == model.output_name):
                r.passes.append(c)
                todo.append(c.name)
            else:
                return None
    if producer is None and r.output:
        return None
    return r


def threshold(v: np.ndarray, kind: str, bw: int, criterion: str) -> tuple[float, int]:
    """The map's threshold and the top it must land on (in steps): ``kind`` is 'unsigned'
    (``[0, t]`` in ``2**bw - 1`` steps), 'centred' (``mid +- t`` in ``2**(bw-1) - 1``) or
    'signed' (``+-t``); ``t`` minimizes the ``criterion`` error ('l1' or 'mse') of rounding
    and clipping ``v`` to that grid, among :data:`THRESHOLDS` of the full reach."""
    v = np.asarray(v, np.float64).ravel()
    if v.size > MAX_VALUES:
        v = np.random.default_rng(0).choice(v, MAX_VALUES, replace=False)
    lo, hi = float(v.min()), float(v.max())
    if kind == "unsigned":
        top, mid, reach = (1 << bw) - 1, 0.0, hi
    elif kind == "centred":
        top, mid, reach = (1 << (bw - 1)) - 1, (lo + hi) / 2, (hi - lo) / 2
    else:
        top, mid, reach = (1 << (bw - 1)) - 1, 0.0, max(-lo, hi)
    if not reach > 0:
        return 0.0, top
    t = reach * THRESHOLDS[:, None]                      # candidates x 1
    step = t / top
    low = 0.0 if kind == "unsigned" else -top
    q = np.clip(np.floor((v[None, :] - mid) / step + 0.5), low, top) * step + mid
    err = np.abs(q - v) if criterion == "l1" else (q - v) ** 2
    return float(t[int(np.argmin(err.sum(axis=1))), 0]), top


def scale_for(t: float, top: int) -> float:
    """``c`` in ``[1, 2)`` with ``c * t = top * 2**-fl`` for an integer ``fl``."""
    if not t > 0 or not np.isfinite(t):
        return 1.0
    fl = int(np.floor(np.log2(top / t)))
    return float(top / np.ldexp(t, fl))


def fill_ranges(model: Model, trace: dict[str, np.ndarray], stored: dict[str, str],
                kinds: dict[str, str], widths: dict[str, int], criterion: str) -> Filled:
    """Rescale every map of ``model`` (lowered) that a scale can reach.

    ``trace``: the float model's tensors on the calibration batch; ``stored``: the tensor a
    map is quantized at, by the name of the layer (or input) that makes it (the end of its
    tail); ``kinds``: 'unsigned', 'centred' or 'signed' by the same names (how the search
    will store it); ``widths``: the map's bits. Maps without a region, or whose stored
    tensor is not in ``trace``, keep ``c = 1``.
    """
    weights: dict[str, dict[str, np.ndarray]] = {}
    clips: dict[str, tuple[float, ...]] = {}      # scaled Clip bounds (Layer.scalars)
    out = Filled(model)

    def params(layer: Layer) -> dict[str, np.ndarray]:
        if layer.name not in weights:
            weights[layer.name] = {k: None if v is None else np.asarray(v, np.float64)
                                   for k, v in layer.params().items()}
        return weights[layer.name]

    for name in [model.input_name] + [l.name for l in model.layers if is_compute(l)]:
        r = region(model, name)
        if r is None or stored.get(name) not in trace or (not r.readers and not r.output):
            continue
        c = scale_for(*threshold(trace[stored[name]], kinds.get(name, "signed"),
                                 widths[name], criterion))
        if c == 1.0:
            continue
        out.scales[name] = c
        if r.producer is None:
            out.input_scale = c
        else:
            p = params(r.producer)
            for k, v in p.items():
                if v is not None:
                    p[k] = v * c
        if r.output:
            out.output_scale = c
        for reader in r.readers:
            key = reader.weight_param
            params(reader)[key] = params(reader)[key] / c
        for layer in r.passes:
            if layer.scalars:
                now = clips.get(layer.name, tuple(float(getattr(layer, k))
                                                  for k in layer.scalars))
                clips[layer.name] = tuple(v * c for v in now)
    layers = []
    for layer in model.layers:
        if layer.name in weights:
            layer = replace(layer, **{k: None if v is None else v.astype(np.float32)
                                      for k, v in weights[layer.name].items()})
        if layer.name in clips:
            layer = replace(layer, **dict(zip(layer.scalars, clips[layer.name])))
        layers.append(layer)
    out.model = model.with_layers(layers)
    return out


def kind_of(zp: int | None, bw: int) -> str:
    """How the search stores a map with offset rule ``zp`` (see ``_Search.offsets``)."""
    if zp is None:
        return "centred"
    return "unsigned" if zp == fixed.qmin(bw) else "signed"


def changed_clips(model: Model, filled: Model) -> dict[str, dict[str, np.ndarray]]:
    """The Clip bounds of ``filled`` that differ from ``model``'s, as ``QuantSpec.params``
    holds them (0-d float64 arrays ``lo`` / ``hi``)."""
    out = {}
    for a, b in zip(model.layers, filled.layers):
        if a.scalars and any(getattr(a, k) != getattr(b, k) for k in a.scalars):
            out[a.name] = {k: np.float64(getattr(b, k)) for k in a.scalars}
    return out
