"""Memory images: the weight and bias words, in the order the sequencer reads them."""

from __future__ import annotations

import numpy as np

from dynfix.errors import DynfixError
from dynfix.quant.ir import Layer
from ..config import MAX_INDEX_BITS, EngineConfig, clog2
from .plan import TRANSFERS, LayerPlan, _ceil_div


def _dense_weights(layer: Layer, wq: np.ndarray, p: LayerPlan) -> np.ndarray:
    """Integer weights as ``(M, C, kh, kw)`` over all input channels: a grouped
    convolution's block-diagonal expansion (zeros across groups); a depthwise one keeps its
    ``(C, 1, kh, kw)``, which the depthwise packing reads."""
    m_out = wq.shape[0]
    if p.kind == "dwconv":
        return wq.reshape((m_out, 1) + p.kernel)
    groups = getattr(layer, "groups", 1)
    if groups == 1:
        return wq.reshape((m_out,) + p.in_shape[:1] + p.kernel)
    cin_g, cout_g = wq.shape[1], m_out // groups
    dense = np.zeros((m_out, cin_g * groups) + p.kernel, np.int64)
    for gi in range(groups):
        rows = slice(gi * cout_g, (gi + 1) * cout_g)
        dense[rows, gi * cin_g:(gi + 1) * cin_g] = wq[rows]
    return dense


def _depthwise_words(w: np.ndarray, cfg: EngineConfig) -> np.ndarray:
    """Weight words of a depthwise layer (``w``: C x 1 x kh x kw) in sequencer order: per
    group ``g``, kernel row, column and word ``t`` of the ``dw_words`` words from the
    group's first word ``(g * tm) // lanes``; lane ``(j, l)`` holds ``w[g*tm + j]`` where
    input channel ``(first + t) * lanes + l`` is output channel ``g*tm + j``, else 0."""
    n, tm, words = cfg.lanes, cfg.tm, cfg.dw_words
    c, _, kh, kw = w.shape
    n_mg = _ceil_div(c, tm)
    out = np.zeros((n_mg, kh, kw, words, tm, n), np.int64)
    for g in range(n_mg):
        first = (g * tm) // n
        for j in range(min(tm, c - g * tm)):
            ch = g * tm + j
            t, lane = divmod(ch - first * n, n)
            out[g, :, :, t, j, lane] = w[ch, 0]
    return out.reshape(-1, tm * n)


def _window_words(w: np.ndarray, cfg: EngineConfig) -> np.ndarray:
    """Weight words of a depthwise layer on the window datapath (``w``: C x 1 x K x K), one
    per group ``g``: row ``j`` holds channel ``g*tm + j``'s taps in lanes ``ky * K + kx``
    (the window's order, ``hw/dw_window.py``), 0 in the lanes beyond ``K * K`` and the rows
    beyond the layer."""
    n, tm = cfg.lanes, cfg.tm
    c, _, kh, kw = w.shape
    n_mg = _ceil_div(c, tm)
    out = np.zeros((n_mg * tm, n), np.int64)
    out[:c, :kh * kw] = w.reshape(c, kh * kw)
    return out.reshape(n_mg, tm * n)


def _pack(values: np.ndarray, bits: int) -> list[int]:
    """Rows of signed integers -> one integer per row, element 0 in the low bits (each
    element's low ``bits`` bits, two's complement). Vectorized: the rows' bits, packed to
    bytes, become integers."""
    rows = values.reshape(values.shape[0], -1).astype(np.int64)
    if rows.size == 0:
        return [0] * rows.shape[0]
    shifts = np.arange(bits, dtype=np.int64)
    # (row, element, bit) -> (row, element * bits + bit): element 0's bit 0 first.
    bitmat = ((rows[:, :, None] >> shifts) & 1).astype(np.uint8).reshape(rows.shape[0], -1)
    packed = np.packbits(bitmat, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def layer_words(cfg: EngineConfig, p: LayerPlan) -> np.ndarray:
    """The weight words of group ``p`` in sequencer order, one row of ``tm * lanes``
    integers each: per group mg, kernel row, column, input word t; lane (j, l) holds
    weight[mg*tm + j, t*lanes + l, ky, kx] (0 beyond the layer); a depthwise group's as
    :func:`_depthwise_words` or :func:`_window_words` lay them out."""
    n, tm = cfg.lanes, cfg.tm
    if p.window:
        return _window_words(p.weights, cfg)
    if p.kind == "dwconv":
        return _depthwise_words(p.weights, cfg)
    weights = p.weights[:, :, :1, :1] if p.shared else p.weights   # one tap serves all
    m_out, c, kh, kw = weights.shape
    t_in, n_mg = _ceil_div(c, n), _ceil_div(m_out, tm)
    w = np.zeros((n_mg * tm, t_in * n, kh, kw), np.int64)
    w[:m_out, :c] = weights
    # (mg, j, t, l, ky, kx) -> (mg, ky, kx, t, j, l)
    w = w.reshape(n_mg, tm, t_in, n, kh, kw).transpose(0, 4, 5, 2, 1, 3)
    return w.reshape(-1, tm * n)


def _live_rows(cfg: EngineConfig, p: LayerPlan, words: np.ndarray) -> np.ndarray:
    """Which values of :func:`layer_words` ``words`` matter (same shape): those of the
    layer's output channels. A last group's rows beyond them compute results the
    write-back drops, so their weights may be anything (with weight indices: any entry)."""
    tm, n = cfg.tm, cfg.lanes
    n_mg = _ceil_div(p.weights.shape[0], tm)
    rows = np.arange(n_mg * tm).reshape(n_mg, 1, tm, 1) < p.weights.shape[0]
    return np.broadcast_to(rows, (n_mg, len(words) // max(1, n_mg), tm, n)).reshape(
        words.shape)


def codebook(cfg: EngineConfig, p: LayerPlan) -> list[int]:
    """The codebook of group ``p`` on an engine with weight indices (``w_index_bits``):
    the distinct values of its weight words (:func:`layer_words`, ascending), the zeros
    its words hold beyond the layer's input channels included, those of the rows beyond
    its output channels not (:func:`_live_rows`); DynfixError when there are more than
    the ``2**w_index_bits`` entries a codebook holds."""
    words = layer_words(cfg, p)
    values = np.unique(words[_live_rows(cfg, p, words)])
    if len(values) > cfg.codebook_entries:
        # A layer shared with no entry at 0 (quant/weight_sharing.py) gets one here for
        # its padded lanes, and may need an index bit more than its sharing's.
        padding = 0 in values and 0 not in p.weights
        why = (f" ({len(values) - 1} of its own and the 0 of its padded lanes)"
               if padding else "")
        need = clog2(len(values))
        wider = (f"{need}-bit indices (w_index_bits {need}) or "
                 if need <= MAX_INDEX_BITS else "")
        raise DynfixError(f"layer {p.name!r} has {len(values)} distinct weights in the "
                          f"engine's weight words{why}, more than the "
                          f"{cfg.codebook_entries} entries of a {cfg.w_index_bits}-bit "
                          f"codebook: store them as {wider}weights (w_index_bits 0)")
    return [int(v) for v in values]


def pack_weights(cfg: EngineConfig, plans: list[LayerPlan],
                 codebooks: list[list[int]] | None = None) -> list[int]:
    """Weight words in sequencer order (:func:`layer_words`), a group in strips once; with
    weight indices (``w_index_bits``) each weight's index in the codebook its entry names
    (``cb``, of ``codebooks``; a dropped row's the first entry)."""
    words = []
    for p in plans:
        if p.kind in TRANSFERS or p.strip:  # a group's later strips read its words again
            continue
        w = layer_words(cfg, p)
        if cfg.w_index_bits:
            table = np.asarray(codebooks[p.entry["cb"]], np.int64)
            w = np.where(_live_rows(cfg, p, w), w, table[0])
            idx = np.minimum(np.searchsorted(table, w), len(table) - 1)
            if not np.array_equal(table[idx], w):
                raise DynfixError(f"layer {p.name!r}: a weight is missing from its codebook")
            words += _pack(idx, cfg.w_index_bits)
        else:
            words += _pack(w, cfg.weight_bits)
    return words


def pack_biases(cfg: EngineConfig, plans: list[LayerPlan]) -> list[int]:
    """Bias words, one per output-channel group: lane ``j`` holds channel ``mg*tm + j``'s
    bias (0 beyond the layer), with ``ch_shift`` its data shift above it. A group's later
    strips (``m_bulk``) use its first strip's words."""
    words = []
    for p in plans:
        if p.strip or p.kind in TRANSFERS:
            continue
        n_mg = _ceil_div(len(p.biases), cfg.tm)
        b = np.zeros(n_mg * cfg.tm, np.int64)
        b[:len(p.biases)] = p.biases
        if cfg.ch_shift:
            s = np.zeros(n_mg * cfg.tm, np.int64)
            s[:len(p.shifts)] = p.shifts
            b = (b & ((1 << cfg.bias_bits) - 1)) | (s << cfg.bias_bits)
        words += _pack(b.reshape(n_mg, cfg.tm), cfg.bias_lane_bits)
    return words
