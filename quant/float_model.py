"""Float reference: a vectorized numpy forward pass (float32, NCHW) that exposes every layer.

The float model defines accuracy. It evaluates the model's DAG in topological order with a
dict of tensors; each layer kind's forward is its own
(:meth:`~dynfix.quant.layers.Layer.forward`). :func:`forward` returns a trace, the output
of every layer by name (or of the ones asked for), which the quantizer's data phase
compares against; :func:`predict` frees each tensor after its last consumer.
"""

from __future__ import annotations

import numpy as np

from dynfix.errors import DynfixError
from .ir import Layer, Model


def apply_layer(layer: Layer, x: np.ndarray, *more: np.ndarray) -> np.ndarray:
    """One layer of the float model on a batch (``more``: an Add's second input)."""
    return layer.forward(x, *more)


def check_input(model: Model, x: np.ndarray) -> np.ndarray:
    """Validate a batch against the model's input shape; returns it as float32."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise DynfixError(f"input has dtype {x.dtype}; expected a numeric array")
    want = tuple(model.input_shape)
    if x.shape == want:
        x = x[None]
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise DynfixError(f"input has shape {tuple(x.shape)}; model {model.name!r} takes "
                          f"N x {' x '.join(map(str, want))}")
    if x.shape[0] == 0:
        raise DynfixError("input batch is empty")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DynfixError("input has NaN/Inf values")
    return x


def forward(model: Model, x: np.ndarray, keep: set[str] | None = None
            ) -> dict[str, np.ndarray]:
    """Run a batch through the model; returns every tensor by name (the trace): the input
    and each layer's output. With ``keep``, only those tensors (and the output) are
    returned, and every other one is freed after its last consumer."""
    x = check_input(model, x)
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
    """Model outputs for a batch (the last layer), computed in chunks to bound memory."""
    x = check_input(model, x)
    out = model.output_name
    outs = [forward(model, x[i:i + batch], keep=set())[out]
            for i in range(0, x.shape[0], batch)]
    return np.concatenate(outs)
