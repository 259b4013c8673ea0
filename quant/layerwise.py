"""Layer-by-layer weight replacement on calibration data, in network order.

Weight sharing (:mod:`.weight_sharing`) and post-training ternarization (:mod:`.ternary`)
replace some compute layers' integer weights, each fitted on the layer's response to the
input the earlier, already replaced layers give it (so later layers see, and compensate,
the errors of earlier ones). :func:`replace_in_order` is that walk through the integer
model: it runs the quantized model on the calibration inputs and hands each named layer
its quantized input (dequantized) and the float model's input to the same layer to fit on;
the layer's replacement weights, biases and format then compute the output the next layers
see.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from . import fixed
from .float_model import trace
from .int_model import (IntModel, accumulate, add_sum, apply_plain, is_compute, is_sum,
                        narrow, plain_input)
from .ir import Layer, Model
from .qspec import LayerFormat, QuantSpec

#: ``replace(layer, fmt, wq, xd, xf) -> (weights, biases, fmt)``: layer ``layer`` (of the
#: lowered integer model) in format ``fmt`` with current integer weights ``wq``, its
#: quantized input dequantized ``xd`` and the float model's input to it ``xf``; returns its
#: new integer weights and biases and its (possibly new) format.
Replace = Callable[[Layer, LayerFormat, np.ndarray, np.ndarray, np.ndarray],
                   tuple[np.ndarray, np.ndarray, LayerFormat]]


def replace_in_order(model: Model, spec: QuantSpec, x: np.ndarray, names: Iterable[str],
                     replace: Replace) -> None:
    """Walk ``model`` (lowered; the float reference) quantized by ``spec`` on the
    calibration inputs ``x`` (the graph's input as the search holds it), calling
    ``replace`` on each compute layer in ``names`` in network order; each replaced layer's
    output is computed with what ``replace`` returned."""
    names = set(names)
    im = IntModel(model, spec)
    qmodel = im.model
    floats = trace(model, x, {model.layer(n).inputs[0] for n in names})
    tr = {qmodel.input_name: fixed.quantize(x, spec.input_bw, spec.input_fl, spec.input_zp)}
    last = qmodel.last_use()
    for i, layer in enumerate(qmodel.layers):
        xin = tr[layer.inputs[0]]
        if is_sum(layer):
            f = spec.layers[layer.name]
            y = narrow(add_sum(xin, tr[layer.inputs[1]], f), f)
        elif is_compute(layer):
            f = spec.layers[layer.name]
            wq, bq = im.weights[layer.name], im.biases[layer.name]
            if layer.name in names:
                src = im.formats[layer.inputs[0]]
                xd = fixed.dequantize(xin, src.fl, src.zp)
                wq, bq, f = replace(layer, f, wq, xd, floats[layer.inputs[0]])
                im.weights[layer.name], im.biases[layer.name] = wq, bq
            y = narrow(accumulate(layer, xin, wq, bq, f), f)
        else:
            y = apply_plain(layer, plain_input(layer, tr), im.formats[layer.inputs[0]])
        tr[layer.name] = y
        for name in layer.inputs:
            if last[name] == i:
                tr.pop(name, None)
