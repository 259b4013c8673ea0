"""Ternary weights after training (TTQ, Zhu, Han, Mao and Dally, ICLR 2017), on the fixed-point
grid, without retraining.

Trained Ternary Quantization gives every layer's weights three values ``{-Wn, 0, +Wp}``: a
weight whose magnitude is below a threshold ``t`` becomes 0, the others ``+Wp`` or ``-Wn`` by
sign, and the two scales are learned. Here they are *fitted* per Conv2d (depthwise
included) and Linear layer on the layer's response to calibration inputs, once the formats
are chosen (``dynfix quantize --ternary``), like :mod:`.weight_sharing`:

* **Response error**: the squared error of the layer's pre-activation (``W x``, no bias),
  the partly-ternarized quantized model's input against the float layer's on the float
  model's input, over the calibration batch, once each channel's mean error is removed
  (the bias correction below removes it): :class:`~.weight_sharing.Responses`, a
  quadratic form in the weights. Layers are ternarized in network order, each on the input
  the earlier ternarized layers give it.
* **Asymmetric form** (the paper's): one pair of scales per *layer*, as TTQ learns them,
  in the integer domain: the weights become the integers ``{-Wn, 0, +Wp}`` at the layer's
  weight width, channel ``m``'s integer standing for itself times
  ``2**-(fl_w + ch_fl[m])`` (per-channel formats, ``LayerFormat.ch_fl``). One integer pair
  per layer keeps the layer a single 3-entry codebook (2-bit indices,
  :mod:`.weight_sharing`'s storage) on today's engine; per-channel pairs would need a
  codebook per channel. The per-channel power-of-two units are free (the channel's
  requantization shift), so two sets are tried: the layer's formats as the search chose
  them for its fixed-point weights, and the symmetric fit's powers of two (below) made
  ``bw_w - 2`` bits finer, where a pair near ``2**(bw_w - 2)`` can depart from them by a
  few percent either way. In either, the threshold is ``t`` times the layer's max|v|
  (TTQ's rule) or each channel's, ``v`` the weights in those units, ``t`` over
  :data:`THRESHOLDS` (TTQ's 0.05 among them), or the symmetric fit's own pattern; for each
  the two scales are the least squares fit of the response (a 2-column problem: the
  columns are the responses of the positive and of the negative weights' pattern),
  rounded onto the grid (saturated, ``Wp`` and ``Wn`` at least one step) and polished by
  +-1 steps. The candidate with the least response error is kept.
* **Symmetric form**: ``Wp = Wn`` per output *channel*, a power of two, so the weights are
  the 2-bit format ``{-1, 0, 1} x 2**-fl`` with a weight fl per channel (the scale is the
  channel's requantization shift, and a product is a sign and a zero test: no multiplier).
  Per channel the response error separates, so each channel's scale is fitted on its own:
  for every threshold of :data:`THRESHOLDS` (relative to the channel's ``max|w|``) the
  least squares scale, then, over the powers of two around those scales, the pair
  (threshold, power of two) with the least error, where the thresholds also include
  rounding to nearest at that power (half of it): the threshold is refitted given the
  rounded scale. The report gives the response SQNR before the rounding (the per-channel
  least squares scales) to show what the power of two costs.
* **Single-weight switches**: the threshold is one rule for many weights; given the
  scales, single weights then switch (a zero to its signed scale, a nonzero weight to 0)
  wherever that lowers the same response error: coordinate descent over the inputs, all
  channels at once, :data:`FLIP_PASSES` passes (the adaptive rounding of :mod:`.adjust`
  does the same between floor and ceiling). In the asymmetric form the pair is refitted to
  the new pattern, :data:`FLIP_ROUNDS` times at most. Not for a Linear whose columns come
  in runs (a folded average pool): the engine stores each run once.
* **Bias correction**: as in weight sharing, each ternarized layer's bias becomes the float
  bias plus the per-channel mean of ``W_f x_f - W x``.
* **First and last layers**: TTQ keeps the first convolution and the last fully connected
  layer at full precision; ``all`` (:func:`ternary_layers`) does the same, and naming them
  ternarizes them too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dynfix.errors import DynfixError
from . import fixed
from .adjust import corrected_bias, tied_columns
from .int_model import (MAX_CH_FL, bias_array, bias_integers, data_bits, fan_in, row_fls,
                        weight_array)
from .ir import Layer, Model
from .layerwise import replace_in_order
from .qspec import LayerFormat, QuantSpec
from .weight_sharing import MAX_INPUTS, Responses, shareable

MODES = ("asymmetric", "symmetric")
ALL = "all"
#: Thresholds tried, as fractions of the largest weight magnitude (the layer's or each
#: channel's in the asymmetric form, the channel's in the symmetric one); TTQ's own is
#: :data:`TTQ_THRESHOLD`.
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
TTQ_THRESHOLD = 0.05
FLIP_ROUNDS = 2             # asymmetric: switches then the pair refitted, this many times
FLIP_PASSES = 3             # passes of single-weight switches on the response error
SYMMETRIC_BITS = 2          # the symmetric form's weight width: {-1, 0, 1} in 2 bits
INDEX_BITS = 2              # the asymmetric form's index width: 3 values


def ternarizable(layer: Layer) -> bool:
    """Layers whose weights can be ternarized: the dot-product compute layers (Conv2d,
    Linear), as for weight sharing."""
    return shareable(layer)


def check_mode(mode: str) -> str:
    """The ternary form, checked."""
    if mode not in MODES:
        raise DynfixError(f"ternary mode {mode!r} is not one of {', '.join(MODES)}")
    return mode


def ternary_layers(model: Model, ternary: str | list[str] | tuple[str, ...]) -> list[str]:
    """The layers to ternarize, in network order: layer names, ``"all"`` (every Conv2d and
    Linear layer but the first and the last, which TTQ keeps at full precision), or both
    (``"all,conv1"``: all and the first too); a comma-separated text or a list."""
    items = ternary.split(",") if isinstance(ternary, str) else list(ternary)
    items = [str(s).strip() for s in items]
    if not items or not all(items):
        raise DynfixError(f"ternary weights: {ternary!r} is not a list of layer names or "
                          f"{ALL!r}")
    names = [layer.name for layer in model.layers if ternarizable(layer)]
    bad = [n for n in items if n != ALL and n not in names]
    if bad:
        raise DynfixError(f"ternary weights: {', '.join(map(repr, bad))} is not a Conv2d or "
                          f"Linear layer of model {model.name!r} (those are "
                          f"{', '.join(names)})")
    chosen = set(items) - {ALL}
    if ALL in items:
        chosen |= set(names[1:-1])
    if not chosen:
        raise DynfixError(f"ternary weights: model {model.name!r} has no Conv2d or Linear "
                          f"layer between its first and last, which {ALL!r} keeps; name "
                          f"the layers to ternarize")
    return [n for n in names if n in chosen]


# ------------------------------------------------------------------------------ fitting

@dataclass
class TernaryReport:
    """What ternarization did to one layer (SQNRs: the layer's response on the calibration
    inputs, :class:`~.weight_sharing.Responses`)."""

    layer: str
    mode: str
    bw_w: int               # the weights' width before
    weights: int            # weights the engine stores (a folded pool's runs once)
    threshold: float        # the kept threshold over max|w| (symmetric: channels' mean)
    values: tuple[int, ...]  # the integer weights (asymmetric: -Wn, 0, Wp; symmetric: -1, 0, 1)
    fl_w: tuple[int, int]   # the weight fl range over the channels after
    zeros: float            # share of the weights that are 0
    sqnr_fixed_db: float    # the fixed-point weights before
    sqnr_ttq_db: float      # TTQ's threshold, each scale the mean of its weights
    sqnr_cut_db: float      # the fitted threshold and scales, before single-weight switches
    sqnr_db: float          # the kept ternary weights
    #: Symmetric: the per-channel least squares scales before rounding to a power of two.
    sqnr_unrounded_db: float | None = None

    @property
    def bits_before(self) -> int:
        """Weight storage as fixed point: ``bw_w`` bits per weight."""
        return self.weights * self.bw_w

    @property
    def bits_after(self) -> int:
        """Symmetric: 2 bits per weight (the format itself). Asymmetric: 2-bit indices and
        a 4-entry codebook of ``bw_w``-bit integers, as weight sharing counts them."""
        if self.mode == "symmetric":
            return self.weights * SYMMETRIC_BITS
        return self.weights * INDEX_BITS + (1 << INDEX_BITS) * self.bw_w

    def line(self, width: int = 12) -> str:
        """One row of the ternary table (:func:`header`), the name in ``width`` columns."""
        vals = ",".join(map(str, self.values))
        fl = f"{self.fl_w[0]}" if self.fl_w[0] == self.fl_w[1] else "{}..{}".format(*self.fl_w)
        unr = "-" if self.sqnr_unrounded_db is None else f"{self.sqnr_unrounded_db:.1f}"
        return (f"{self.layer:<{width}} {vals:>12} {fl:>6} {self.threshold:>5.2f} "
                f"{100 * self.zeros:>5.1f} {self.weights:>8} {self.bits_before:>9} "
                f"{self.bits_after:>9} {self.sqnr_fixed_db:>7.1f} {self.sqnr_ttq_db:>7.1f} "
                f"{unr:>7} {self.sqnr_cut_db:>7.1f} {self.sqnr_db:>7.1f}")


def index_bits(reports: list[TernaryReport]) -> dict[str, int]:
    """The index width of every asymmetric ternary layer (its integers take 3 values, a
    2-bit index into a codebook with a 0, as ``LayerFormat.share`` records for weight
    sharing); a symmetric layer's 2-bit format holds its weights as they are."""
    return {r.layer: INDEX_BITS for r in reports if r.mode == "asymmetric"}


def header(width: int = 12) -> str:
    """The ternary table's head: layer, the integer values, weight fl, threshold over
    max|w|, % zeros, stored weights, bits before and after; response SQNR (dB) of the
    fixed-point weights, of TTQ's threshold with mean scales, of the symmetric form before
    its power-of-two rounding, of the fitted threshold and scales, and of the kept ternary
    weights (after single-weight switches)."""
    return (f"{'layer':<{width}} {'values':>12} {'fl_w':>6} {'t':>5} {'%0':>5} "
            f"{'weights':>8} {'bits w':>9} {'bits t':>9} {'fixed':>7} {'ttq':>7} "
            f"{'unrnd':>7} {'cut':>7} {'ternary':>7}")


def summary(reports: list[TernaryReport]) -> str:
    """The ternarized layers' weight storage before and after, with the ratio."""
    before = sum(r.bits_before for r in reports)
    after = sum(r.bits_after for r in reports)
    return (f"ternary weights ({reports[0].mode}) in {len(reports)} layers: "
            f"{before / 8:.0f} bytes of weights -> {after / 8:.0f} bytes "
            f"({before / after:.2f}x)")


def _quadratic(resp: Responses, bases: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(G, r): the response error of the weights ``sum_k c_k bases[k]`` (each the layer's
    shape, float) is ``c G c - 2 r c`` plus a constant."""
    k, g = len(bases), len(resp.groups)
    j = resp.groups[0].h.shape[0]
    b = np.stack([np.asarray(v, np.float64).reshape(g, -1, j) for v in bases], axis=1)
    gram, rhs = np.zeros((k, k)), np.zeros(k)
    for gr, bj in zip(resp.groups, b):                  # bj: k x m x J
        gram += np.einsum("kmj,lmj->kl", bj @ gr.h, bj)
        rhs += np.einsum("kmj,jm->k", bj, gr.cross)
    return gram, rhs


def _integer_pair(gram: np.ndarray, rhs: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The integers ``(Wn, Wp)``, ``1 <= Wn <= -lo`` and ``1 <= Wp <= hi``, near the least
    squares solution of ``c G c - 2 r c`` (on the weights ``Wp P - Wn N``): the best of its
    floors and ceilings, then moved by +-1 while the error falls."""
    used = np.diag(gram) > 0
    c = np.ones(2)
    if used.any():
        c[used] = np.linalg.lstsq(gram[np.ix_(used, used)], rhs[used], rcond=None)[0]
    top = np.array([-lo, hi], np.float64)

    def err(v: np.ndarray) -> float:
        return float(v @ gram @ v - 2 * rhs @ v)

    cands = [np.clip(np.array([a, b]), 1, top) for a in (np.floor(c[0]), np.ceil(c[0]))
             for b in (np.floor(c[1]), np.ceil(c[1]))]
    best = min(cands, key=err)
    steps = [np.array(s, np.float64) for s in ((1, 0), (-1, 0), (0, 1), (0, -1))]
    for _ in range(int(top.sum())):
        moves = [best + s for s in steps if np.all(best + s >= 1) and np.all(best + s <= top)]
        nxt = min(moves, key=err)
        if err(nxt) >= err(best):
            break
        best = nxt
    return best


def _asymmetric(resp: Responses, v: np.ndarray, step: np.ndarray, q: np.ndarray | None,
                bw: int, signs: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The asymmetric form of the weights ``v`` (integer units, unrounded; ``step`` each
    row's weight step, shaped to broadcast): the integer weights and the threshold, a
    fraction of the layer's max|v| (TTQ's) or of each channel's, whichever fits better;
    also the pattern ``signs`` (-1, 0, 1), if given, with its threshold NaN (``q``: the
    current integers, kept when they are ternary already and fit better)."""
    lo, hi = fixed.qmin(bw), fixed.qmax(bw)
    rows = np.abs(v).reshape(len(v), -1).max(axis=1).reshape((-1,) + (1,) * (v.ndim - 1))
    best, best_t, best_err = None, 0.0, np.inf
    cuts = [(t, t * top) for top in (rows.max(), rows) for t in THRESHOLDS]
    for t, cut in cuts + ([] if signs is None else [(np.nan, None)]):
        pos, neg = (v > cut, v < -cut) if cut is not None else (signs > 0, signs < 0)
        gram, rhs = _quadratic(resp, [-(neg * step), pos * step])
        wn, wp = _integer_pair(gram, rhs, lo, hi)
        cand = (wp * pos - wn * neg).astype(np.int64)
        e = resp.error(cand * step)
        if e < best_err:
            best, best_t, best_err = cand, t, e
    if q is not None and len(np.unique(q)) <= 3 and 0 in q and resp.error(q * step) < best_err:
        best, best_t = np.asarray(q, np.int64), 0.0       # already ternary: kept
    return best, best_t


def _flips(resp: Responses, w: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """The weights ``w`` (float, the layer's shape) with single weights switched to their
    alternative ``alt`` (a zero to its signed scale, a nonzero weight to zero) while the
    response error falls: :data:`FLIP_PASSES` passes of coordinate descent over the
    columns, every channel at once (as ``adjust``'s adaptive rounding does between floor
    and ceiling)."""
    g = len(resp.groups)
    j = resp.groups[0].h.shape[0]
    w = np.asarray(w, np.float64).reshape(g, -1, j).copy()
    alt = np.asarray(alt, np.float64).reshape(g, -1, j).copy()
    for gr, wj, aj in zip(resp.groups, w, alt):
        grad = wj @ gr.h - gr.cross.T                   # m x J: half the error's gradient
        for _ in range(FLIP_PASSES):
            changed = False
            for k in range(j):
                d = aj[:, k] - wj[:, k]
                take = (2 * d * grad[:, k] + d * d * gr.h[k, k]) < 0
                if take.any():
                    dt = np.where(take, d, 0.0)
                    aj[take, k] = wj[take, k]
                    wj[:, k] += dt
                    grad += dt[:, None] * gr.h[k][None, :]
                    changed = True
            if not changed:
                break
    return w.reshape(resp.shape)


def _flipped_pair(resp: Responses, q: np.ndarray, step: np.ndarray, sign: np.ndarray,
                  bw: int) -> np.ndarray:
    """The asymmetric integers ``q`` (units ``step``) improved by rounds of single-weight
    switches (:func:`_flips`; a zero goes to ``Wp`` or ``-Wn`` by the float weight's
    ``sign``) each followed by the least squares pair for the new pattern, while the
    response error falls."""
    err = resp.error(q * step)
    for _ in range(FLIP_ROUNDS):
        wp, wn = max(int(q.max()), 0), max(-int(q.min()), 0)
        alt = np.where(q == 0, np.where(sign > 0, wp, -wn), 0) * step
        w = _flips(resp, q * step, alt)
        pos, neg = w > 0, w < 0
        gram, rhs = _quadratic(resp, [-(neg * step), pos * step])
        n, p = _integer_pair(gram, rhs, fixed.qmin(bw), fixed.qmax(bw))
        cand = (p * pos - n * neg).astype(np.int64)
        e = resp.error(cand * step)
        if e >= err:
            break
        q, err = cand, e
    return q


def ttq_weights(v: np.ndarray, bw: int) -> np.ndarray:
    """TTQ's threshold (:data:`TTQ_THRESHOLD` of max|v|) with each scale the mean magnitude
    of the weights it replaces (the fit on the weights themselves), on the grid: the
    baseline the response fit is compared with."""
    top = float(np.abs(v).max())
    pos, neg = v > TTQ_THRESHOLD * top, v < -TTQ_THRESHOLD * top
    wp = np.clip(np.floor(v[pos].mean() + 0.5), 1, fixed.qmax(bw)) if pos.any() else 0
    wn = np.clip(np.floor(-v[neg].mean() + 0.5), 1, -fixed.qmin(bw)) if neg.any() else 0
    return (wp * pos - wn * neg).astype(np.int64)


def _symmetric(resp: Responses, w: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The symmetric form of the float weights ``w`` (M x ...): the signs ``{-1, 0, 1}``, each
    channel's scale exponent ``e`` (scale ``2**e``), its threshold over its max|w| (NaN for
    a channel left all zero) and the unrounded least squares weights."""
    g = len(resp.groups)
    j = resp.groups[0].h.shape[0]
    rows = np.asarray(w, np.float64).reshape(g, -1, j)
    signs = np.zeros_like(rows)
    expo = np.zeros(rows.shape[:2], np.int64)
    thr = np.full(rows.shape[:2], np.nan)
    unrounded = np.zeros_like(rows)
    for k, (gr, r) in enumerate(zip(resp.groups, rows)):      # r: m x J
        top = np.abs(r).max(axis=1)                            # m
        grid = np.array(THRESHOLDS)[:, None] * top[None]       # T x m
        a, b = _sign_moments(gr, r, grid)
        ok = (a > 0) & (b > 0)
        ls = np.where(ok, b / np.where(ok, a, 1), 0.0)         # T x m least squares scales
        gain = np.where(ok, b * ls, 0.0)                       # error falls by b^2 / a
        i = np.argmax(gain, axis=0)
        cols = np.arange(r.shape[0])
        unrounded[k] = np.sign(r) * (np.abs(r) > grid[i, cols][:, None]) * ls[i, cols][:, None]
        if not ok.any():
            continue
        lg = np.log2(ls[ok])
        exps = np.arange(int(np.floor(lg.min())) - 1, int(np.ceil(lg.max())) + 2)
        # thresholds: the grid, and rounding to nearest at each power of two
        cuts = np.concatenate([grid, np.ldexp(0.5, exps)[:, None] * np.ones_like(top)])
        a, b = _sign_moments(gr, r, cuts)                      # (T + E) x m
        s = np.ldexp(1.0, exps)[:, None, None]                 # E x 1 x 1
        err = s * s * a[None] - 2 * s * b[None]                # E x (T + E) x m
        flat = err.reshape(-1, err.shape[2])
        best = np.argmin(flat, axis=0)
        live = flat[best, cols] < 0                            # else all zero is better
        ei, ti = np.divmod(best, err.shape[1])
        expo[k] = np.where(live, exps[ei], 0)
        cut = cuts[ti, cols]
        thr[k] = np.where(live, cut / np.where(top > 0, top, 1), np.nan)
        signs[k] = np.sign(r) * (np.abs(r) > cut[:, None]) * live[:, None]
    shape = np.shape(w)
    return (signs.reshape(shape), expo.reshape(-1), thr.reshape(-1),
            unrounded.reshape(shape))


def _sign_moments(gr, r: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For the sign patterns ``s = sign(r) [|r| > cut]`` of every row of ``cuts`` (one cut per
    channel): ``s H s`` and ``s cross`` per (cut row, channel), the response error of the
    weights ``c s`` being ``c^2 (s H s) - 2 c (s cross)`` plus a constant."""
    s = np.sign(r)[None] * (np.abs(r)[None] > cuts[:, :, None])     # C x m x J
    a = np.einsum("cmj,cmj->cm", s @ gr.h, s)
    b = np.einsum("cmj,jm->cm", s, gr.cross)
    return a, b


def _channel_fls(fls: np.ndarray, live: np.ndarray, fallback: int
                 ) -> tuple[int, tuple[int, ...], np.ndarray]:
    """Per-channel weight fls ``fls`` as a format: (fl_w, ch_fl, the live channels more
    than :data:`~.int_model.MAX_CH_FL` finer than the coarsest, which cannot be held).
    Channels not ``live`` take the coarsest (``fallback`` when none is live)."""
    base = int(fls[live].min()) if live.any() else fallback
    far = live & (fls - base > MAX_CH_FL)
    offsets = np.where(live & ~far, fls - base, 0)
    return base, tuple(int(c) for c in offsets) if offsets.any() else (), far


@dataclass
class Ternarized:
    """One layer's ternary weights: the float weights on the grid (exact), the weight
    width and formats (``fl_w``, ``ch_fl``) they are exact in, and the report."""

    weights: np.ndarray
    bw_w: int
    fl_w: int
    ch_fl: tuple[int, ...]
    report: TernaryReport


def ternarize_layer(layer: Layer, fmt: LayerFormat, wf: np.ndarray, q: np.ndarray,
                    xd: np.ndarray, xf: np.ndarray, mode: str = "asymmetric",
                    seed: int = 0) -> Ternarized:
    """Ternarize one layer: its float weights ``wf``, its current integer weights ``q`` in
    ``fmt``, its dequantized quantized input ``xd`` and float input ``xf`` (module
    docstring)."""
    check_mode(mode)
    fl = row_fls(fmt.fl_w, fmt.ch_fl, wf)
    step = np.ldexp(1.0, -fl)                                   # broadcasts over wf
    v = np.asarray(wf, np.float64) / step                       # integer units, unrounded
    resp = Responses(layer, wf, xd, xf, np.ones(len(wf)), np.random.default_rng(seed))
    sq_fixed = resp.sqnr_db(q * step)
    sq_ttq = resp.sqnr_db(ttq_weights(v, fmt.bw_w) * step)
    unrounded_db = None
    signs, expo, thr_m, unrounded = _symmetric(resp, wf)
    live = ~np.isnan(thr_m)
    # single-weight switches, unless the columns come in runs the engine stores once
    tied = tied_columns(np.asarray(wf)) == 1
    if mode == "asymmetric":
        qt, t = _asymmetric(resp, v, step, q, fmt.bw_w)
        bw, fl_w, ch = fmt.bw_w, fmt.fl_w, fmt.ch_fl
        # the other units: the symmetric fit's per-channel powers of two, bw_w - 2 bits
        # finer, so that the pair can differ from them by a few percent
        fl2, ch2, far = _channel_fls(-expo + fmt.bw_w - SYMMETRIC_BITS, live, fmt.fl_w)
        step2 = np.ldexp(1.0, -row_fls(fl2, ch2, wf))
        signs[far] = 0
        qt2, t2 = _asymmetric(resp, np.asarray(wf, np.float64) / step2, step2, None,
                              fmt.bw_w, signs)
        if resp.error(qt2 * step2) < resp.error(qt * step):
            qt, t, step, fl_w, ch = qt2, t2, step2, fl2, ch2
        cut_db = resp.sqnr_db(qt * step)
        if tied:
            qt = _flipped_pair(resp, qt, step, np.sign(wf), fmt.bw_w)
        w = qt * step
        vals = tuple(int(c) for c in np.unique(qt))
        thr = t if not np.isnan(t) else float(np.nanmean(thr_m)) if live.any() else 0.0
    else:
        fl_w, ch, far = _channel_fls(-expo, live, fmt.fl_w)
        signs[far] = 0                                  # beyond the offsets: all zero
        live &= ~far
        bw = SYMMETRIC_BITS
        unit = np.ldexp(1.0, -row_fls(fl_w, ch, signs))
        cut_db = resp.sqnr_db(signs * unit)
        if tied:
            keep = ~live.reshape((-1,) + (1,) * (signs.ndim - 1))    # no scale: left alone
            alt = np.where(keep, signs, np.where(signs == 0, np.sign(wf), 0)) * unit
            signs = np.rint(_flips(resp, signs * unit, alt) / unit)
        w = signs * unit
        vals = tuple(int(c) for c in np.unique(signs))
        thr = float(np.nanmean(thr_m[live])) if live.any() else 0.0
        unrounded_db = resp.sqnr_db(unrounded)
    fls_after = row_fls(fl_w, ch, w).reshape(-1)
    runs = tied_columns(np.asarray(wf))
    stored = w.reshape(len(w), -1)[:, ::runs]
    rep = TernaryReport(layer.name, mode, fmt.bw_w, int(stored.size), float(thr), vals,
                        (int(fls_after.min()), int(fls_after.max())),
                        float(np.mean(stored == 0)), sq_fixed, sq_ttq, cut_db,
                        resp.sqnr_db(w), unrounded_db)
    return Ternarized(w.astype(np.float32), bw, fl_w, ch, rep)


def ternary_format(layer: Layer, f: LayerFormat, t: Ternarized, bias: np.ndarray
                   ) -> LayerFormat:
    """``f`` with the ternary weights' width and formats, the bias at its overflow-free fl
    (no finer than the accumulator) and the accumulator width that holds them: what the
    later layers' calibration input is computed with (the search picks the bias fl
    again)."""
    scaled = np.ldexp(np.asarray(bias, np.float64), np.asarray(t.ch_fl or 0, np.int64))
    fl_b = min(fixed.min_fl_no_overflow(float(np.abs(scaled).max()), f.bw_b),
               f.fl_in + t.fl_w)
    g = replace(f, bw_w=t.bw_w, fl_w=t.fl_w, ch_fl=t.ch_fl, fl_b=fl_b)
    return replace(g, acc_bits=fixed.acc_bits(fan_in(layer), data_bits(g), g.bw_w, g.bw_b,
                                              g.bias_shift))


def ternarize_model(model: Model, spec: QuantSpec, x: np.ndarray, names: list[str],
                    mode: str = "asymmetric"
                    ) -> tuple[dict[str, Ternarized], dict[str, np.ndarray]]:
    """Ternarize the layers ``names`` of ``model`` (lowered; its float weights are the
    reference) quantized by ``spec`` (its adjusted parameters, if any, are the current
    integers), in network order, on up to :data:`~.weight_sharing.MAX_INPUTS` calibration
    inputs ``x`` (the graph's input as the search holds it). Returns each layer's ternary
    weights and formats, and its corrected bias (float32), by layer."""
    check_mode(mode)
    out: dict[str, Ternarized] = {}
    biases: dict[str, np.ndarray] = {}

    def ternarize(layer: Layer, f: LayerFormat, wq: np.ndarray, xd: np.ndarray,
                  xf: np.ndarray) -> tuple[np.ndarray, np.ndarray, LayerFormat]:
        wf = weight_array(model.layer(layer.name))
        t = ternarize_layer(layer, f, wf, wq, xd, xf, mode)
        out[layer.name] = t
        b = corrected_bias(layer, bias_array(model.layer(layer.name)), wf, xf, t.weights, xd)
        biases[layer.name] = b
        f = ternary_format(layer, f, t, b)
        return (fixed.quantize(t.weights, f.bw_w, row_fls(f.fl_w, f.ch_fl, t.weights)),
                bias_integers(b, f), f)

    replace_in_order(model, spec, np.asarray(x)[:MAX_INPUTS], names, ternarize)
    return out, biases
