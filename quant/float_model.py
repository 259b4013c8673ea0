"""Float reference: a vectorized numpy forward pass (float32, NCHW) that exposes every layer.

The float model defines accuracy. It evaluates the model's DAG in topological order with a
dict of tensors; each layer kind's forward is its own
(:meth:`~dynfix.quant.layers.Layer.forward`). :func:`forward` returns a trace, the output
of every layer by name (or of the ones asked for), which the quantizer's data phase
compares against; :func:`predict` frees each tensor after its last consumer.

Both take the user's data in the model's own layout (``Model.input_layout``: a Keras model's
N x H x W x C) and turn it into the graph's channels-first input once, in
:func:`check_input`, which also applies the model's input normalization
(``Model.input_affine``, the host's per-channel scale and shift); :func:`trace` runs on such
a checked input (what the quantizer holds, and what the integer model quantizes).
"""

from __future__ import annotations

import numpy as np

from dynfix.errors import DynfixError
from .ir import Layer, Model


def apply_layer(layer: Layer, x: np.ndarray, *more: np.ndarray) -> np.ndarray:
    """One layer of the float model on a batch (``more``: an Add's second input)."""
    return layer.forward(x, *more)


def check_input(model: Model, x: np.ndarray) -> np.ndarray:
    """Validate a batch of the user's data against the model's input (its
    ``data_shape``, in its ``input_layout``); returns it as the graph's float32 input
    (channels first: :meth:`~dynfix.quant.ir.Model.to_internal`), normalized by the model's
    ``input_affine`` if it has one (:meth:`~dynfix.quant.ir.Model.normalize`)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise DynfixError(f"input has dtype {x.dtype}; expected a numeric array")
    want = tuple(model.data_shape)
    if x.shape == want:
        x = x[None]
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        layout = f" ({model.input_layout})" if model.input_layout != "NCHW" else ""
        raise DynfixError(f"input has shape {tuple(x.shape)}; model {model.name!r} takes "
                          f"N x {' x '.join(map(str, want))}{layout}")
    if x.shape[0] == 0:
        raise DynfixError("input batch is empty")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DynfixError("input has NaN/Inf values")
    return model.normalize(model.to_internal(x))


def forward(model: Model, x: np.ndarray, keep: set[str] | None = None
            ) -> dict[str, np.ndarray]:
    """Run a batch of the user's data through the model; returns every tensor by name
    (the trace): the input (as the graph takes it) and each layer's output. With ``keep``,
    only those tensors (and the output) are returned, and every other one is freed after
    its last consumer."""
    return trace(model, check_input(model, x), keep)


def trace(model: Model, x: np.ndarray, keep: set[str] | None = None
          ) -> dict[str, np.ndarray]:
    """:func:`forward` on the graph's own input (what :func:`check_input` returned: it is
    not checked or transposed again)."""
    tensors = {model.input_name: x}
    last = model.last_use() if keep is not None else {}
    out = model.output_name
    for i, layer in enumerate(model.layers):
        tensors[layer.name] = apply_layer(layer, *(tensors[t] for t in layer.inputs))
        if keep is not None:
            for t in set(layer.inputs):
                if last[t] == i and t not in keep and t != out:
                    del tensors[t]
    return tensors


def predict(model: Model, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Model outputs for a batch (the last layer), computed in chunks to bound memory; a
    1-D model's map output as N x C x L (:meth:`~dynfix.quant.ir.Model.to_data_output`)."""
    x = check_input(model, x)
    out = model.output_name
    outs = [trace(model, x[i:i + batch], keep=set())[out]
            for i in range(0, x.shape[0], batch)]
    return model.to_data_output(np.concatenate(outs))
