"""Weight sharing (Deep Compression, Han et al. 2016) on the fixed-point grid, without retraining.

Per compute layer (Conv2d, depthwise included, and Linear) a codebook of at most ``2**b``
entries replaces the weights: every weight becomes the entry its index names. The entries
lie on the layer's fixed-point weight grid, so a shared layer is an ordinary fixed-point
layer whose integer weights take at most ``2**b`` distinct values: the integer model and the
engine run it unchanged (the b-bit index storage and the codebook lookup are a hardware step
of their own).

* **Codebook**: 1-D k-means on the layer's float weights, started at ``2**b`` centroids
  spaced linearly between the smallest and the largest weight (the start Han et al. found
  best: it keeps the few large weights represented), then each centroid rounded onto the
  grid; entries that round to the same integer merge. With ``zero`` (the default) one
  entry is 0 (the one nearest to it is moved there, and the refinement keeps it): the
  engine pads its weight words with zero weights (the lanes beyond a layer's input
  channels, a depthwise layer's other channels), which its codebook must hold to store
  the words as ``b``-bit indices (``hw/codebook.py``); Deep Compression's pruned zeros
  have an entry too. Without it all ``2**b`` entries are free (the refinement below runs
  from k-means' own entries and from them with the 0, which stays, and keeps the better,
  so a layer is never worse off for it), and the compiler adds the padding's 0 to a
  layer's codebook, which may then need ``b + 1`` index bits.
* **Per-channel weight formats** (``LayerFormat.ch_fl``): the codebook is shared in the
  integer domain. Channel ``m``'s weights are clustered as ``w * 2**(fl_w + ch_fl[m])``
  (the integers they round to) and index ``k`` stands for the integer ``c_k`` in every
  channel, at that channel's fl: one integer codebook per layer, so the lookup needs no
  per-channel table (the channel's shift is already in its requantization).
* **Refinement on the layer's response**: given the assignments, the entries are the least
  squares fit of the layer's pre-activation (``W x``, no bias; each channel's mean error
  removed, as the bias correction below removes it) on the partly-shared quantized model's
  input to the float layer's on the float model's input, over the calibration batch (a
  ``2**b`` x ``2**b`` normal system built from the input Gram matrix), re-rounded to
  integers and polished by +-1 steps; then every weight goes to its nearest entry again,
  and so on a few rounds. The best codebook on that error is kept
  (k-means' own included), so refinement never makes it worse on the calibration data.
  Layers are shared in network order, each on the input the earlier shared layers give.
* **Bias correction**: sharing shifts the mean of a layer's responses; each shared layer's
  bias becomes the float bias plus the per-channel mean of ``W_f x_f - W x`` (as
  ``adjust.corrected_bias`` does for rounding), whatever the search's own options.
* **Huffman coding** of each layer's index stream (``quant/huffman.py``): the size of the
  weight image when it is stored entropy-coded in flash and decoded at load.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dynfix.errors import DynfixError
from . import fixed
from .adjust import corrected_bias, tied_columns
from .huffman import huffman_lengths, table_bits
from .int_model import bias_array, bias_integers, is_compute, row_fls, weight_array
from .ir import Layer, Model
from .layerwise import replace_in_order
from .qspec import LayerFormat, QuantSpec

MIN_BITS, MAX_BITS = 2, 8      # index widths accepted
KMEANS_ITERS = 100             # Lloyd iterations at most (1-D converges in far fewer)
REFINE_ROUNDS = 4              # alternations of least-squares update and reassignment
MAX_ROWS = 16384               # calibration rows (inputs x output positions) per group
MAX_INPUTS = 256               # calibration inputs the layer responses are measured on


def shareable(layer: Layer) -> bool:
    """Layers whose weights can be shared: the dot-product compute layers (Conv2d, Linear;
    an Affine's per-channel scale is not a weight array worth a codebook)."""
    return is_compute(layer) and layer.dot_product


def parse_share(text: str) -> int | dict[str, int]:
    """``"4"`` (every shareable layer) or ``"conv1=4,fc=5"`` (those layers) -> bits."""
    text = str(text).strip()
    if "=" not in text:
        return _bits(text, "weight sharing")
    out: dict[str, int] = {}
    for part in text.split(","):
        name, sep, v = part.partition("=")
        if not sep or not name.strip():
            raise DynfixError(f"weight sharing: {part!r} is not LAYER=BITS")
        out[name.strip()] = _bits(v, f"weight sharing of layer {name.strip()!r}")
    return out


def _bits(v, where: str) -> int:
    """An index width in MIN_BITS..MAX_BITS."""
    try:
        b = int(str(v).strip())
    except ValueError:
        raise DynfixError(f"{where}: {v!r} is not a number of index bits") from None
    if not MIN_BITS <= b <= MAX_BITS:
        raise DynfixError(f"{where}: {b}-bit indices; choose {MIN_BITS} to {MAX_BITS}")
    return b


def share_bits(model: Model, share: int | str | dict) -> dict[str, int]:
    """The index width of every layer to share, by name: ``share`` as :func:`parse_share`
    takes it, or already parsed (an int for every shareable layer, a dict by layer)."""
    if isinstance(share, str):
        share = parse_share(share)
    names = [layer.name for layer in model.layers if shareable(layer)]
    if isinstance(share, dict):
        bad = [n for n in share if n not in names]
        if bad:
            raise DynfixError(f"weight sharing: {', '.join(map(repr, bad))} is not a Conv2d "
                              f"or Linear layer of model {model.name!r} (those are "
                              f"{', '.join(names)})")
        return {n: _bits(b, f"weight sharing of layer {n!r}") for n, b in share.items()}
    b = _bits(share, "weight sharing")
    return {n: b for n in names}


def record_shares(spec: QuantSpec, bits: dict[str, int]) -> None:
    """Record in ``spec`` (in place) the index width of every layer shared at ``bits``
    (``LayerFormat.share``, which Q.yaml keeps), so that ``generate`` can store them as
    indices."""
    for name, b in bits.items():
        f = spec.layers.get(name)
        if isinstance(f, LayerFormat):
            spec.layers[name] = replace(f, share=int(b))


# --------------------------------------------------------------------------------- k-means

def kmeans_1d(v: np.ndarray, k: int, iters: int = KMEANS_ITERS
              ) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means of the values ``v`` into ``k`` clusters, started linearly between
    ``min(v)`` and ``max(v)``: (centroids ascending, each value's cluster). An empty
    cluster keeps its centroid."""
    v = np.asarray(v, np.float64).ravel()
    c = np.linspace(v.min(), v.max(), k)
    idx = nearest(c, v)
    for _ in range(iters):
        counts = np.bincount(idx, minlength=k)
        sums = np.bincount(idx, weights=v, minlength=k)
        c = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        new = nearest(c, v)
        if np.array_equal(new, idx):
            break
        idx = new
    return c, idx


def nearest(c: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Index of the entry of ``c`` (ascending) nearest to each of ``v`` (ties: the lower)."""
    c = np.asarray(c, np.float64)
    mids = (c[1:] + c[:-1]) / 2
    return np.searchsorted(mids, np.asarray(v, np.float64).ravel(), side="left")


def on_grid(c: np.ndarray, bw: int) -> np.ndarray:
    """Centroids (integer units) rounded half up onto the bw-bit grid, saturated, distinct,
    ascending."""
    return np.unique(np.clip(np.floor(np.asarray(c) + 0.5), fixed.qmin(bw), fixed.qmax(bw)))


# ------------------------------------------------------------------------ layer responses

@dataclass
class _Group:
    """One group of output channels (all of them except in a grouped conv), its rows
    centred (each column's mean over the rows removed, so the error is what is left after
    the bias correction): the input Gram ``h = X^T X`` of the quantized rows,
    ``cross = X^T (X_f W_f^T)`` against the float response, that response's centred
    energy (``spread``) and its energy, and each output channel's weight step ``2**-fl``."""

    h: np.ndarray           # J x J
    cross: np.ndarray       # J x m
    spread: float
    energy: float
    step: np.ndarray        # m


class Responses:
    """The squared error of a layer's pre-activation, ``|X W^T - X_f W_f^T|^2`` summed over
    the calibration rows and output channels once each channel's mean error is removed (the
    bias correction that follows sharing removes it), as a quadratic form in the weights:
    exact for any weights, and the normal equations of a codebook given the assignments."""

    def __init__(self, layer: Layer, wf: np.ndarray, xd: np.ndarray, xf: np.ndarray,
                 step: np.ndarray, rng: np.random.Generator):
        g = layer.groups
        self.shape = wf.shape
        m = wf.shape[0] // g
        wf = np.asarray(wf, np.float64).reshape(g, m, -1)
        self.groups: list[_Group] = []
        keep = None
        for j in range(g):
            rq = np.asarray(layer.input_rows(xd, j), np.float64)
            rf = np.asarray(layer.input_rows(xf, j), np.float64)
            if keep is None and len(rq) > MAX_ROWS:
                keep = np.sort(rng.choice(len(rq), MAX_ROWS, replace=False))
            if keep is not None:
                rq, rf = rq[keep], rf[keep]
            t = rf @ wf[j].T
            energy = float(np.sum(t * t))
            rq, t = rq - rq.mean(axis=0), t - t.mean(axis=0)
            self.groups.append(_Group(rq.T @ rq, rq.T @ t, float(np.sum(t * t)), energy,
                                      step[j * m:(j + 1) * m]))

    @property
    def energy(self) -> float:
        """``|X_f W_f^T|^2``: the float response's energy."""
        return sum(gr.energy for gr in self.groups)

    def error(self, q: np.ndarray) -> float:
        """The squared response error of the integer weights ``q`` (the layer's shape)."""
        q = np.asarray(q, np.float64).reshape(len(self.groups), -1, self.groups[0].h.shape[0])
        e = 0.0
        for gr, qj in zip(self.groups, q):
            w = qj * gr.step[:, None]
            e += float(np.sum((w @ gr.h) * w) - 2 * np.sum(w * gr.cross.T)) + gr.spread
        return max(e, 0.0)

    def sqnr_db(self, q: np.ndarray) -> float:
        """The response's SQNR (dB) with the integer weights ``q``: its energy over the
        error (the mean error removed)."""
        e = self.error(q)
        return float("inf") if e == 0 else float(10 * np.log10(self.energy / e))

    def normal(self, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(G, r): the error of codebook ``c`` with assignments ``idx`` (the layer's shape)
        is ``c G c - 2 r c`` plus a constant."""
        idx = idx.reshape(len(self.groups), -1, self.groups[0].h.shape[0])
        gram, rhs = np.zeros((k, k)), np.zeros(k)
        for gr, ij in zip(self.groups, idx):
            a = (ij[None] == np.arange(k)[:, None, None]) * gr.step[None, :, None]  # k m J
            ah = a @ gr.h
            gram += np.einsum("kmj,lmj->kl", ah, a)
            rhs += np.einsum("kmj,jm->k", a, gr.cross)
        return gram, rhs


def with_zero(c: np.ndarray) -> np.ndarray:
    """Grid entries ``c`` with the one nearest to 0 moved to 0 when none is (the module
    docstring: the engine's padding needs a zero entry), distinct, ascending."""
    c = np.asarray(c, np.float64).copy()
    if len(c) and not np.any(c == 0):
        c[np.argmin(np.abs(c))] = 0
    return np.unique(c)


def _polish(c: np.ndarray, gram: np.ndarray, rhs: np.ndarray, bw: int, zero: bool = True
            ) -> np.ndarray:
    """Integer entries ``c`` moved by +-1 while ``c G c - 2 r c`` falls (within bw bits);
    with ``zero`` an entry at 0 stays there (:func:`with_zero`)."""
    c = c.astype(np.float64).copy()
    lo, hi = fixed.qmin(bw), fixed.qmax(bw)
    grad = gram @ c - rhs
    for _ in range(64 * len(c)):
        # the change of moving entry k by d is d (2 grad_k + d G_kk)
        d = np.stack([-np.ones_like(c), np.ones_like(c)])
        gain = d * (2 * grad[None] + d * np.diag(gram)[None])
        gain[(c[None] + d < lo) | (c[None] + d > hi) | (zero & (c[None] == 0))] = np.inf
        s, k = np.unravel_index(np.argmin(gain), gain.shape)
        if gain[s, k] >= -1e-12 * max(1.0, abs(float(rhs @ c))):
            break
        c[k] += d[s, k]
        grad += gram[:, k] * d[s, k]
    return c


# ------------------------------------------------------------------------------- sharing

@dataclass
class ShareReport:
    """What sharing did to one layer."""

    layer: str
    bits: int               # index width b
    bw_w: int               # the weights' width
    weights: int            # weights the engine stores (a folded pool's runs once)
    distinct: int           # distinct integer weights after sharing (<= 2**bits)
    distinct_before: int
    sqnr_fixed_db: float    # response SQNR (Responses) of the unshared fixed-point weights
    sqnr_kmeans_db: float   # ... with the k-means codebook, before refinement
    sqnr_db: float          # ... with the kept (refined) codebook
    huffman_bits: int       # the index stream Huffman-coded (payload)
    table_bits: int         # the code's description: one code length per entry
    zero: bool = True       # one entry forced to 0 (share_layer's ``zero``)

    @property
    def bits_before(self) -> int:
        """Weight storage as fixed point: ``bw_w`` bits per weight."""
        return self.weights * self.bw_w

    @property
    def bits_after(self) -> int:
        """b-bit indices plus the ``2**b``-entry codebook of ``bw_w``-bit integers."""
        return self.weights * self.bits + (1 << self.bits) * self.bw_w

    @property
    def bits_huffman(self) -> int:
        """Huffman-coded indices, their code table and the codebook."""
        return self.huffman_bits + self.table_bits + (1 << self.bits) * self.bw_w

    def line(self, width: int = 12) -> str:
        """One row of the sharing table (:func:`header`), the name in ``width`` columns."""
        return (f"{self.layer:<{width}} {self.bits:>2} {self.distinct:>4} {self.weights:>8} "
                f"{self.bits_before:>9} {self.bits_after:>9} {self.bits_huffman:>9} "
                f"{self.sqnr_fixed_db:>7.1f} {self.sqnr_kmeans_db:>7.1f} {self.sqnr_db:>7.1f}")


def header(width: int = 12) -> str:
    """The sharing table's head: layer, b, distinct values, stored weights, bits as fixed
    point, as indices and codebook, Huffman-coded; response SQNR (dB) of the fixed-point,
    k-means and kept weights."""
    return (f"{'layer':<{width}} {'b':>2} {'vals':>4} {'weights':>8} {'bits w':>9} "
            f"{'bits idx':>9} {'huffman':>9} {'fixed':>7} {'kmeans':>7} {'shared':>7}")


def share_layer(layer: Layer, fmt: LayerFormat, wf: np.ndarray, q: np.ndarray,
                xd: np.ndarray, xf: np.ndarray, bits: int, seed: int = 0, zero: bool = True
                ) -> tuple[np.ndarray, ShareReport]:
    """Share one layer's weights: its float weights ``wf``, its current integer weights
    ``q`` (the unshared fixed point), its dequantized quantized input ``xd`` and float
    input ``xf``; returns the shared integer weights and the report (module docstring).
    ``zero``: one codebook entry is 0 (:func:`with_zero`); else all ``2**bits`` are free.
    A layer whose weights already take at most ``2**bits`` values keeps them either way."""
    fl = row_fls(fmt.fl_w, fmt.ch_fl, wf)
    step = np.broadcast_to(np.ldexp(1.0, -fl.reshape(-1)), (wf.shape[0],)).astype(np.float64)
    v = np.asarray(wf, np.float64) * np.ldexp(1.0, fl)      # integer units, unrounded
    k = 1 << bits
    resp = Responses(layer, wf, xd, xf, step, np.random.default_rng(seed))
    sq_fixed = resp.sqnr_db(q)
    have = np.unique(q)
    if len(have) <= k:                      # already few enough values: nothing to share
        best = q
        sq_km = sq_fixed
    else:
        c = on_grid(kmeans_1d(v, k)[0], fmt.bw_w)
        # Free entries: refined from k-means' own and, the 0 pinned, from the forced
        # codebook; the better is kept, so freeing the entry never costs on this layer.
        starts = [(with_zero(c), True)] if zero else [(c, False), (with_zero(c), True)]
        sq_km = resp.sqnr_db(starts[0][0][nearest(starts[0][0], v)].reshape(q.shape))
        best, best_err = min((_refine(start, pin, v, resp, q.shape, fmt.bw_w)
                              for start, pin in starts), key=lambda t: t[1])
    best = best.astype(np.int64)
    _, ids = np.unique(best, return_inverse=True)
    runs = tied_columns(np.asarray(wf))
    stream = ids.reshape(len(best), -1)[:, ::runs].ravel()    # what the engine stores
    lengths = huffman_lengths(np.bincount(stream, minlength=k))
    rep = ShareReport(layer.name, bits, fmt.bw_w, stream.size, int(len(np.unique(best))),
                      int(len(have)), sq_fixed, sq_km, resp.sqnr_db(best),
                      int(np.sum(lengths[stream])), table_bits(lengths), zero)
    return best, rep


def _refine(c: np.ndarray, zero: bool, v: np.ndarray, resp: Responses, shape: tuple,
            bw: int) -> tuple[np.ndarray, float]:
    """The best integer weights (``shape``) and their response error over the codebook
    ``c`` and :data:`REFINE_ROUNDS` refinements of it (module docstring) for the weights
    ``v`` (integer units, unrounded); with ``zero`` an entry at 0 stays there."""
    best = c[nearest(c, v)].reshape(shape)
    best_err = resp.error(best)
    for _ in range(REFINE_ROUNDS):
        idx = nearest(c, v).reshape(shape)
        gram, rhs = resp.normal(idx, len(c))
        used = (np.diag(gram) > 0) & ((c != 0) | (not zero))   # a pinned 0 stays
        fit = c.astype(np.float64).copy()
        if used.any():
            fit[used] = np.linalg.lstsq(gram[np.ix_(used, used)], rhs[used], rcond=None)[0]
        fit = np.clip(np.floor(fit + 0.5), fixed.qmin(bw), fixed.qmax(bw))
        fit = _polish(fit, gram, rhs, bw, zero)
        cand = fit[idx]
        err = resp.error(cand)
        if err < best_err:
            best, best_err = cand, err
        c = np.unique(fit)
    return best, best_err


def share_model(model: Model, spec: QuantSpec, x: np.ndarray, bits: dict[str, int],
                zero: bool = True
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[ShareReport]]:
    """Share the weights of the layers in ``bits`` (name -> index width) of ``model``
    (lowered; its float weights are the reference and what k-means clusters) quantized by
    ``spec`` (its adjusted parameters, if any, are the unshared integers), in network order,
    on up to :data:`MAX_INPUTS` calibration inputs ``x`` (the graph's input as the search
    holds it: checked, and scaled for a range-filled model), each codebook with a forced 0
    entry or not (``zero``, :func:`share_layer`). Returns the shared weights as
    floats on the grid (float32, exact; by layer), the corrected biases (float32, by layer)
    and a report per layer."""
    shared: dict[str, np.ndarray] = {}
    biases: dict[str, np.ndarray] = {}
    reports: list[ShareReport] = []

    def share(layer: Layer, f: LayerFormat, wq: np.ndarray, xd: np.ndarray,
              xf: np.ndarray) -> tuple[np.ndarray, np.ndarray, LayerFormat]:
        wf = weight_array(model.layer(layer.name))
        q, rep = share_layer(layer, f, wf, wq, xd, xf, bits[layer.name], zero=zero)
        shared[layer.name] = fixed.dequantize(q, row_fls(f.fl_w, f.ch_fl, q)).astype(np.float32)
        biases[layer.name] = corrected_bias(layer, bias_array(model.layer(layer.name)), wf, xf,
                                            shared[layer.name], xd)
        reports.append(rep)
        return q, bias_integers(biases[layer.name], f), f

    replace_in_order(model, spec, np.asarray(x)[:MAX_INPUTS], bits, share)
    return shared, biases, reports


def summary(reports: list[ShareReport]) -> str:
    """The whole model's weight storage: fixed point -> indices -> Huffman, with ratios."""
    before = sum(r.bits_before for r in reports)
    idx = sum(r.bits_after for r in reports)
    huff = sum(r.bits_huffman for r in reports)
    free = "" if all(r.zero for r in reports) else " (no entry forced to 0)"
    return (f"weight sharing of {len(reports)} layers{free}: {before / 8:.0f} bytes of "
            f"weights -> {idx / 8:.0f} bytes of indices and codebooks ({before / idx:.2f}x) -> "
            f"{huff / 8:.0f} bytes Huffman-coded ({before / huff:.2f}x)")
