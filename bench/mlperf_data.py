"""Deterministic, in-distribution calibration and test inputs for the four MLPerf Tiny models.

Why: a post-training quantizer picks its ranges (and a benchmark measures its error) on the
inputs it is shown. Uniform noise has neither the range nor the statistics of what the
trained networks see, so ranges come out wrong and errors mean little. This module gives
each reference model inputs drawn from (a stand-in for) its own input distribution, made by
the model's own training-time preprocessing, with nothing downloaded at run time.

``inputs(name, split, n=None)`` returns float32 batches in NCHW order:

==========  ====================  =====================================================
name        shape                 source and range
==========  ====================  =====================================================
"vww"       N x 3 x 96 x 96       photos shipped in scikit-image / scikit-learn, random
                                  crops, half of them around a person; pixels / 255 in
                                  [0, 1] (Keras ``rescale=1/255``; the int8 model's input
                                  is scale 1/255, zero point -128)
"resnet8"   N x 3 x 32 x 32       the same kind of crops at CIFAR-10 size; raw pixels
                                  0..255 (train.py feeds CIFAR-10 uint8 without rescaling;
                                  the int8 model's input is scale 1.0, zero point -128)
"dscnn"     N x 1 x 49 x 10       MFCCs of keyword_spotting/get_dataset.py computed from
                                  espeak-ng speech (10 keywords, unknown words, silence),
                                  read from ``models/mlperf_tiny/dscnn_features.npz``
"ad"        N x 640               5 frames x 128 log-mel dB (anomaly_detection/common.py)
                                  of synthesized ToyCar-like motor sound, read from
                                  ``models/mlperf_tiny/ad_features.npz``
==========  ====================  =====================================================

Splits: ``"calib"`` (default 64 inputs) and ``"test"`` (default 200), with fixed seeds and
drawn from different sources: different photos; different espeak-ng accents, voice
variants and "unknown" words; different synthetic machines. ``labels(name, split)`` gives
the class of each input where one is known (vww: 1 = person crop, 0 = no person, in the
reference model's class order ``non_person, person``; dscnn: index into ``KWS_LABELS``).

The audio features are precomputed, because their synthesis needs the ``espeak-ng``
program: ``python bench/mlperf_data.py --write`` rebuilds both npz files (float16,
compressed, the same bytes on every run). They hold dscnn 96 calib / 240 test clips (8 / 20
per class, classes shuffled) and ad 64 / 200 vectors (4 from each of 16 / 50 clips), so
``n`` can go up to those counts there. ``python bench/mlperf_data.py`` (no option) prints value ranges, checks that
two calls give identical arrays and, when ``models/mlperf_tiny/*.onnx`` exist, runs each
model in onnxruntime on the test inputs (class histogram, keyword accuracy, autoencoder MSE).

Run-time needs: numpy; for vww/resnet8 also scikit-image (its bundled photos) and
scikit-learn with Pillow (``load_sample_images``). ``--write`` also needs scipy and the
Debian package ``espeak-ng``.
"""

from __future__ import annotations

import argparse
import functools
import io
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FEATURE_DIR = ROOT / "models" / "mlperf_tiny"
DSCNN_NPZ = FEATURE_DIR / "dscnn_features.npz"
AD_NPZ = FEATURE_DIR / "ad_features.npz"

NAMES = ("vww", "resnet8", "dscnn", "ad")
SPLITS = ("calib", "test")
#: Default batch sizes when ``n`` is None.
DEFAULT_N = {"calib": 64, "test": 200}

#: Class order of the KWS model (tfds speech_commands label order, get_dataset.word_labels).
KWS_LABELS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes",
              "_silence_", "_unknown_")
#: Class order of the VWW model (flow_from_directory sorts the folder names).
VWW_LABELS = ("non_person", "person")

# One seed per (model, split): the splits never share a random stream.
_SEEDS = {("vww", "calib"): 9601, ("vww", "test"): 9602,
          ("resnet8", "calib"): 3201, ("resnet8", "test"): 3202,
          ("dscnn", "calib"): 4901, ("dscnn", "test"): 4902,
          ("ad", "calib"): 6401, ("ad", "test"): 6402}


def _check(name: str, split: str) -> None:
    """ValueError for an unknown model name or split."""
    if name not in NAMES:
        raise ValueError(f"unknown model {name!r}; expected one of {NAMES}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def inputs(name: str, split: str, n: int | None = None) -> np.ndarray:
    """Float32 NCHW inputs (N x 640 for "ad") of MLPerf Tiny model ``name`` for ``split``.

    ``n`` defaults to ``DEFAULT_N[split]``. The result is deterministic, and the first ``k``
    inputs are the same whatever ``n >= k`` is asked for. Images are generated on demand
    (any ``n``); audio features come from the committed npz files, so ``n`` is capped by
    what they hold (a ValueError says how many).
    """
    _check(name, split)
    n = DEFAULT_N[split] if n is None else int(n)
    if n < 0:
        raise ValueError("n must be >= 0")
    if name in ("vww", "resnet8"):
        return _image_batch(name, split, n)[0]
    x = _stored(name, split, n)[0]
    return x[:, None] if name == "dscnn" else x


def labels(name: str, split: str, n: int | None = None) -> np.ndarray:
    """Int64 class per input of ``inputs(name, split, n)`` where the class is known.

    vww: 1 for a crop around a person, 0 for a crop of a photo without people.
    dscnn: the spoken word's index in ``KWS_LABELS`` (10 = silence, 11 = unknown word).
    resnet8 and ad have no labels (the photos are not of CIFAR-10's classes; the machine
    sounds are all "normal"): a ValueError.
    """
    _check(name, split)
    n = DEFAULT_N[split] if n is None else int(n)
    if name == "vww":
        return _image_batch(name, split, n)[1]
    if name == "dscnn":
        return _stored(name, split, n)[1]
    raise ValueError(f"no labels for {name!r}")


# --------------------------------------------------------------------------------------
# Images: random crops of the photos that scikit-image and scikit-learn ship.
# --------------------------------------------------------------------------------------

#: (photo, person box as (x0, y0, x1, y1) fractions of width/height, or None) per split.
#: Photos with people: skimage's astronaut (calibration) and cameraman (test).
_PHOTOS: dict[str, tuple[tuple[str, tuple[float, float, float, float] | None], ...]] = {
    "calib": (("astronaut", (0.0, 0.0, 0.66, 1.0)), ("chelsea", None), ("rocket", None),
              ("china", None), ("grass", None), ("coins", None), ("brick", None)),
    "test": (("camera", (0.17, 0.05, 0.62, 1.0)), ("coffee", None), ("motorcycle", None),
             ("flower", None), ("hubble_deep_field", None), ("gravel", None),
             ("clock", None)),
}
#: Longest short side kept of a photo (larger ones are area-downscaled once): bounds the
#: cost of a crop while every crop of the allowed scales still shrinks to 96 x 96.
_MAX_SHORT_SIDE = 320

#: Per model: output size, fraction of crops around a person, crop side as a fraction of
#: the photo's short side (VWW is COCO scenes; CIFAR-10 images are object-centred).
@dataclass(frozen=True)
class _ImageCfg:
    size: int                          # output side in pixels
    person_frac: float | None          # share of crops around a person (None: any photo)
    scale: tuple[float, float]         # crop side / the photo's short side


_IMAGE_CFG = {"vww": _ImageCfg(size=96, person_frac=0.5, scale=(0.35, 1.0)),
              "resnet8": _ImageCfg(size=32, person_frac=None, scale=(0.25, 0.9))}


@functools.cache
def _photo(name: str) -> np.ndarray:
    """One bundled photo as float64 H x W x 3 in 0..255, short side <= _MAX_SHORT_SIDE.

    skimage's legacy images ship inside its wheel (no pooch download); the two scikit-learn
    sample images are read with Pillow from its wheel. Gray photos are repeated to RGB.
    """
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images
        img = load_sample_images().images[("china", "flower").index(name)]
    elif name == "motorcycle":
        from skimage import data
        img = data.stereo_motorcycle()[0]
    else:
        from skimage import data
        img = getattr(data, name)()
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3].astype(np.float64)
    h, w = img.shape[:2]
    f = _MAX_SHORT_SIDE / min(h, w)
    if f < 1.0:
        oh, ow = round(h * f), round(w * f)
        img = _area_resize(img, 0.0, 0.0, float(h), float(w), oh, ow)
    return img


def _area_weights(start: float, length: float, n_in: int, n_out: int) -> np.ndarray:
    """n_out x n_in weights averaging the window [start, start + length) into n_out cells.

    Each output cell is the mean of the input over its sub-interval, input pixel j being
    the interval [j, j + 1): area ("box") resampling with fractional edges, as cv2's
    INTER_AREA does when shrinking. Rows sum to 1.
    """
    edges = start + length * np.arange(n_out + 1, dtype=np.float64) / n_out
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in, dtype=np.float64)[None, :]
    w = np.clip(np.minimum(hi, j + 1.0) - np.maximum(lo, j), 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def _area_resize(img: np.ndarray, y0: float, x0: float, h: float, w: float,
                 out_h: int, out_w: int) -> np.ndarray:
    """Area-resample the window (y0, x0, h, w) of H x W x C ``img`` to out_h x out_w x C.

    Only the rows/columns the window touches enter the two matrix products.
    """
    r0, r1 = int(np.floor(y0)), int(np.ceil(y0 + h))
    c0, c1 = int(np.floor(x0)), int(np.ceil(x0 + w))
    wy = _area_weights(y0 - r0, h, r1 - r0, out_h)          # out_h x rows
    wx = _area_weights(x0 - c0, w, c1 - c0, out_w)          # out_w x cols
    rows = np.tensordot(wy, img[r0:r1, c0:c1], axes=(1, 0))   # out_h x cols x C
    return np.tensordot(rows, wx, axes=(1, 1)).transpose(0, 2, 1)   # out_h x out_w x C


@functools.lru_cache(maxsize=32)
def _image_batch_cached(name: str, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    cfg = _IMAGE_CFG[name]
    size = cfg.size
    photos = _PHOTOS[split]
    person = [i for i, (_, box) in enumerate(photos) if box is not None]
    other = [i for i, (_, box) in enumerate(photos) if box is None]
    rng = np.random.default_rng(_SEEDS[(name, split)])
    # One row of uniforms per crop, drawn in a single call: crop k depends only on row k,
    # so the first k crops do not change with n.
    u = rng.random((n, 6))
    pf = cfg.person_frac
    if pf is None:                                           # any photo, uniformly
        src = np.minimum((u[:, 0] * len(photos)).astype(int), len(photos) - 1)
    else:
        is_person = u[:, 0] < pf
        r = np.where(is_person, u[:, 0] / pf, (u[:, 0] - pf) / (1.0 - pf))
        pick_p = np.asarray(person)[np.minimum((r * len(person)).astype(int), len(person) - 1)]
        pick_o = np.asarray(other)[np.minimum((r * len(other)).astype(int), len(other) - 1)]
        src = np.where(is_person, pick_p, pick_o)
    lo, hi = cfg.scale
    scale = lo + (hi - lo) * u[:, 1]
    aspect = np.exp(np.log(4.0 / 3.0) * (2.0 * u[:, 2] - 1.0))   # w / h in [3/4, 4/3]
    flip = u[:, 5] < 0.5

    # float64 sums: rounding to 8-bit below then hardly depends on the BLAS or the CPU.
    out = np.empty((n, size, size, 3), np.float64)
    lab = np.zeros(n, np.int64)
    for k in range(n):                                       # one matrix product per crop
        pname, box = photos[src[k]]
        img = _photo(pname)
        hh, ww = img.shape[:2]
        side = scale[k] * min(hh, ww)
        cw = min(side * np.sqrt(aspect[k]), ww)
        ch = min(side / np.sqrt(aspect[k]), hh)
        if box is None:
            x0 = u[k, 3] * (ww - cw)
            y0 = u[k, 4] * (hh - ch)
        else:
            # The person box's centre lies in the middle half of the crop.
            cx, cy = (box[0] + box[2]) / 2 * ww, (box[1] + box[3]) / 2 * hh
            x0 = np.clip(cx - cw * (0.25 + 0.5 * u[k, 3]), 0.0, ww - cw)
            y0 = np.clip(cy - ch * (0.25 + 0.5 * u[k, 4]), 0.0, hh - ch)
            lab[k] = 1
        out[k] = _area_resize(img, y0, x0, ch, cw, size, size)
    out[flip] = out[flip, :, ::-1]
    out = np.rint(np.clip(out, 0.0, 255.0))                  # 8-bit pixels, as decoded
    if name == "vww":
        out /= 255.0
    out = np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=np.float32)
    out.setflags(write=False)
    lab.setflags(write=False)
    return out, lab


def _image_batch(name: str, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops (N x 3 x S x S float32) and person labels; a fresh copy for the caller."""
    x, y = _image_batch_cached(name, split, n)
    return x.copy(), y.copy()


# --------------------------------------------------------------------------------------
# Audio features: the training pipelines' front ends in numpy.
# --------------------------------------------------------------------------------------

SAMPLE_RATE = 16000

# keyword_spotting (kws_util.py defaults, get_dataset.py): 1 s clips, 30 ms Hann windows
# every 20 ms, |STFT| with fft_length 512, 40 mel bins over 20..4000 Hz (HTK mel scale, as
# tf.signal.linear_to_mel_weight_matrix), log(mel + 1e-6), first 10 MFCCs of
# tf.signal.mfccs_from_log_mel_spectrograms.
KWS_SAMPLES = 16000
KWS_WINDOW = 480
KWS_STRIDE = 320
KWS_FFT = 512
KWS_MELS = 40
KWS_MEL_RANGE = (20.0, 4000.0)
KWS_MFCC = 10
KWS_FRAMES = 1 + (KWS_SAMPLES - KWS_WINDOW) // KWS_STRIDE   # 49

# anomaly_detection (baseline.yaml, common.file_to_vector_array): librosa melspectrogram
# with n_fft 1024, hop 512, 128 Slaney mel bands (librosa's default norm), power 2,
# centred frames with reflect padding (librosa 0.6), 10 log10(mel + eps), frames 50..249
# of each 10 s clip, 5 consecutive frames concatenated into one 640-vector.
AD_FFT = 1024
AD_HOP = 512
AD_MELS = 128
AD_FRAMES = 5
AD_CLIP_SECONDS = 10.0
AD_FRAME_SLICE = slice(50, 250)


def _hann_periodic(n: int) -> np.ndarray:
    """tf.signal.hann_window / scipy get_window('hann') default: the periodic Hann window."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def _hz_to_mel_htk(f: np.ndarray | float) -> np.ndarray:
    """TensorFlow's (HTK) mel scale."""
    return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)


@functools.cache
def tf_mel_matrix(num_mel_bins: int, num_spectrogram_bins: int, sample_rate: float,
                  lower_edge_hertz: float, upper_edge_hertz: float) -> np.ndarray:
    """tf.signal.linear_to_mel_weight_matrix in numpy (num_spectrogram_bins x num_mel_bins).

    HTK mel scale 1127 ln(1 + f / 700); triangles between equally spaced mel edges, not
    normalized; the DC bin's row is zero.
    """
    freqs = np.linspace(0.0, sample_rate / 2.0, num_spectrogram_bins)[1:]
    mel = _hz_to_mel_htk(freqs)[:, None]
    edges = np.linspace(_hz_to_mel_htk(lower_edge_hertz), _hz_to_mel_htk(upper_edge_hertz),
                        num_mel_bins + 2)
    lower, center, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    w = np.maximum(0.0, np.minimum((mel - lower) / (center - lower),
                                   (upper - mel) / (upper - center)))
    return np.pad(w, ((1, 0), (0, 0)))


def _dct2_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Unnormalized DCT-II (tf.signal.dct type 2, norm None): y_k = 2 sum x_n cos(...)."""
    k = np.arange(n_out)[None, :]
    m = np.arange(n_in)[:, None]
    return 2.0 * np.cos(np.pi * k * (2 * m + 1) / (2.0 * n_in))


def kws_mfcc(audio: np.ndarray) -> np.ndarray:
    """MFCC fingerprints (B x 49 x 10 float32) of B one-second 16 kHz clips (B x 16000).

    get_dataset.py's 'mfcc' branch: tf.signal.stft (frame 480, step 320, fft_length None
    = 512, periodic Hann, no end padding), magnitude, mel matrix (40 bins, 20..4000 Hz),
    log(mel + 1e-6), mfccs_from_log_mel_spectrograms (DCT-II / sqrt(2 * 40)), first 10.
    ``audio`` is already normalized as the pipeline does (divided by its maximum).
    """
    audio = np.asarray(audio, np.float64)
    if audio.ndim == 1:
        audio = audio[None]
    idx = np.arange(KWS_FRAMES)[:, None] * KWS_STRIDE + np.arange(KWS_WINDOW)[None, :]
    frames = audio[:, idx] * _hann_periodic(KWS_WINDOW)
    spec = np.abs(np.fft.rfft(frames, n=KWS_FFT, axis=-1))
    mel = spec @ tf_mel_matrix(KWS_MELS, KWS_FFT // 2 + 1, SAMPLE_RATE, *KWS_MEL_RANGE)
    log_mel = np.log(mel + 1e-6)
    mfcc = log_mel @ _dct2_matrix(KWS_MELS, KWS_MFCC) / np.sqrt(2.0 * KWS_MELS)
    return mfcc.astype(np.float32)


def _hz_to_mel_slaney(f: np.ndarray | float) -> np.ndarray:
    """librosa's default (Slaney) mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz,
                    min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                    f / f_sp)


def _mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    """Inverse of _hz_to_mel_slaney."""
    m = np.asarray(m, np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)),
                    f_sp * m)


@functools.cache
def librosa_mel_matrix(sr: float, n_fft: int, n_mels: int, fmin: float = 0.0,
                       fmax: float | None = None) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels) in numpy (n_mels x (1 + n_fft / 2)).

    Slaney mel scale (htk=False) and Slaney area normalization (norm=1 in librosa 0.6,
    'slaney' later): each triangle is scaled by 2 / (its width in Hz).
    """
    fmax = sr / 2.0 if fmax is None else fmax
    fft_freqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_f = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax),
                                          n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]


def ad_log_mel(y: np.ndarray) -> np.ndarray:
    """Log-mel spectrogram (frames x 128 float32, dB) of one 16 kHz clip, as common.py.

    librosa.feature.melspectrogram(n_fft=1024, hop_length=512, n_mels=128, power=2):
    reflect-padded centred frames, periodic Hann, |STFT|^2, Slaney mel filters; then
    20 / power * log10(mel + float eps).
    """
    y = np.asarray(y, np.float64)
    pad = AD_FFT // 2
    yp = np.pad(y, pad, mode="reflect")
    n_frames = 1 + (len(yp) - AD_FFT) // AD_HOP
    idx = np.arange(n_frames)[:, None] * AD_HOP + np.arange(AD_FFT)[None, :]
    spec = np.abs(np.fft.rfft(yp[idx] * _hann_periodic(AD_FFT), axis=-1)) ** 2
    mel = spec @ librosa_mel_matrix(SAMPLE_RATE, AD_FFT, AD_MELS).T
    return (10.0 * np.log10(mel + sys.float_info.epsilon)).astype(np.float32)


def ad_vectors(log_mel: np.ndarray) -> np.ndarray:
    """The 640-vectors of common.file_to_vector_array: frames 50..249, 5 at a time.

    Vector t is frames t..t+4 of the slice, frame-major (element 128 * f + mel bin).
    """
    lm = log_mel[AD_FRAME_SLICE]
    n = len(lm) - AD_FRAMES + 1
    idx = np.arange(n)[:, None] + np.arange(AD_FRAMES)[None, :]
    return lm[idx].reshape(n, AD_FRAMES * AD_MELS)


@functools.cache
def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a committed feature file, read once per process."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python bench/mlperf_data.py --write`")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _stored(name: str, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First n stored feature rows (float32) and labels of the dscnn / ad npz files."""
    z = _load_npz(DSCNN_NPZ if name == "dscnn" else AD_NPZ)
    x = z[split]
    if n > len(x):
        raise ValueError(f"{name} {split}: {n} inputs asked, {len(x)} stored "
                         "(more need `bench/mlperf_data.py --write` with larger counts)")
    lab = z.get(f"{split}_label", np.zeros(len(x), np.int64))
    return x[:n].astype(np.float32), lab[:n].astype(np.int64)


# --------------------------------------------------------------------------------------
# Synthesis for --write: noise, espeak-ng speech, ToyCar-like machine sound.
# --------------------------------------------------------------------------------------

def _shaped_noise(rng: np.random.Generator, n: int, gain: Callable[[np.ndarray], np.ndarray]
                  ) -> np.ndarray:
    """Gaussian noise of n samples with amplitude spectrum gain(f), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    y = np.fft.irfft(spec * gain(np.maximum(f, 1.0)), n)
    return y / (np.sqrt(np.mean(y ** 2)) + 1e-12)


#: Background-noise kinds (stand-ins for speech_commands' _background_noise_ files).
NOISE_KINDS = ("white", "pink", "brown", "hum", "tap", "bike")


def _background(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """n samples of one kind of background noise, unit RMS."""
    t = np.arange(n) / SAMPLE_RATE
    if kind == "white":
        return _shaped_noise(rng, n, lambda f: np.ones_like(f))
    if kind == "pink":
        return _shaped_noise(rng, n, lambda f: f ** -0.5)
    if kind == "brown":
        return _shaped_noise(rng, n, lambda f: 1.0 / (f + 20.0))
    if kind == "hum":                                         # mains hum + a little hiss
        f0 = rng.choice([50.0, 60.0])
        k = np.arange(1, 8)[:, None]
        y = ((rng.uniform(0.2, 1.0, (7, 1)) / k)
             * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi, (7, 1)))).sum(0)
        y /= np.sqrt(np.mean(y ** 2))
        return y + 0.1 * _shaped_noise(rng, n, lambda f: f ** -0.5)
    if kind == "tap":                                         # running water: band noise
        fc = rng.uniform(1500.0, 4000.0)
        y = _shaped_noise(rng, n, lambda f: np.exp(-0.5 * (np.log(f / fc) / 0.6) ** 2))
        return y * (1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(3, 9) * t))
    if kind == "bike":                                        # periodic whirr
        y = _shaped_noise(rng, n, lambda f: 1.0 / (1.0 + (f / 800.0) ** 2))
        return y * (1.0 + 0.8 * np.sin(2 * np.pi * rng.uniform(1.0, 2.5) * t)) / 1.3
    raise ValueError(kind)


def _mic(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """A random first-order high-pass and low-pass: the colour of a phone microphone."""
    f = np.maximum(np.fft.rfftfreq(len(y), 1.0 / SAMPLE_RATE), 1e-3)
    hp, lp = rng.uniform(40.0, 300.0), rng.uniform(3000.0, 7500.0)
    h = (1.0 / np.sqrt(1.0 + (hp / f) ** 2)) / np.sqrt(1.0 + (f / lp) ** 2)
    return np.fft.irfft(np.fft.rfft(y) * h, len(y))


# espeak-ng accents and voice variants; the splits share none of them (held-out speakers).
_KWS_VOICES = {
    "calib": (("en-gb", "en-gb-scotland", "en-029", "en-gb-x-gbclan"),
              ("m1", "m3", "m5", "m7", "f1", "f3", "f5", "klatt", "klatt3", "adam", "linda",
               "john", "steph", "robert")),
    "test": (("en-us", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbcwmd"),
             ("m2", "m4", "m6", "f2", "f4", "klatt2", "klatt4", "paul", "belinda", "david",
              "steph2", "max", "annie", "ed")),
}
# Words for the "unknown" class (other speech_commands words), disjoint between splits.
_KWS_UNKNOWN = {
    "calib": ("bed", "bird", "cat", "dog", "eight", "five", "happy", "house", "marvin",
              "one", "seven", "three", "wow"),
    "test": ("four", "nine", "sheila", "six", "tree", "two", "zero", "backward",
             "forward", "follow", "learn", "visual"),
}
#: Stored counts per class (12 classes): calib 8 x 12 = 96, test 20 x 12 = 240.
KWS_PER_CLASS = {"calib": 8, "test": 20}


def _espeak(word: str, voice: str, pitch: int, speed: int) -> np.ndarray:
    """One word spoken by espeak-ng, as float64 16 kHz samples in [-1, 1]."""
    from scipy.signal import resample_poly
    wav = subprocess.run(["espeak-ng", "--stdout", "-v", voice, "-p", str(pitch),
                          "-s", str(speed), "-a", "150", word],
                         check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        sr = w.getframerate()
        y = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768.0
    g = np.gcd(SAMPLE_RATE, sr)
    return resample_poly(y, SAMPLE_RATE // g, sr // g)


#: Knobs of the speech clips (see _kws_clip). espeak-ng's speed in words per minute; the
#: slowest settings drawl single words unlike people saying a command. Recording noise and
#: silence are the speech_commands background kinds a DS-CNN learnt as such (its silence
#: class is white / pink noise; a band-pass "tap" noise at low SNR masks the word).
#: Synthetic room reverberation (RT60 0.1..0.4 s) was tried and dropped: it made the
#: keywords less recognizable, as the slow speeds did.
_KWS_CFG: dict = {
    "pitch": (15, 86), "speed": (140, 201), "snr_db": (12.0, 45.0),
    "noise": ("white", "pink", "brown", "hum", "bike"), "silence": ("white", "pink"),
    "short_frac": 0.1,
}


def _kws_clip(rng: np.random.Generator, split: str, label: int) -> tuple[np.ndarray, str]:
    """One speech_commands-like clip (16000 samples, normalized as get_dataset.py)."""
    cfg = _KWS_CFG
    accents, variants = _KWS_VOICES[split]
    n = KWS_SAMPLES
    if KWS_LABELS[label] == "_silence_":
        kind = cfg["silence"][rng.integers(len(cfg["silence"]))]
        y = _mic(rng, _background(rng, kind, n))
        text = f"silence:{kind}"
    else:
        word = (KWS_LABELS[label] if label < 10
                else _KWS_UNKNOWN[split][rng.integers(len(_KWS_UNKNOWN[split]))])
        voice = f"{accents[rng.integers(len(accents))]}+{variants[rng.integers(len(variants))]}"
        pitch, speed = int(rng.integers(*cfg["pitch"])), int(rng.integers(*cfg["speed"]))
        speech = _espeak(word, voice, pitch, speed)
        on = np.flatnonzero(np.abs(speech) > 0.02 * np.abs(speech).max())
        speech = speech[max(on[0] - 160, 0): on[-1] + 160][: n - 800]   # trim, <= 0.95 s
        # Word position: speech_commands clips are cut around the loudest second, so the
        # word sits roughly centred with some spread (get_dataset's own shift is 0).
        slack = n - len(speech)
        start = int(np.clip(rng.normal(0.5, 0.2), 0.0, 1.0) * slack)
        y = np.zeros(n)
        y[start:start + len(speech)] = speech
        # The recording: microphone colour and room/background noise.
        kind = cfg["noise"][rng.integers(len(cfg["noise"]))]
        rms = np.sqrt(np.mean(speech ** 2))
        snr_db = rng.uniform(*cfg["snr_db"])
        y = _mic(rng, y + _background(rng, kind, n) * rms * 10.0 ** (-snr_db / 20.0))
        text = f"{word}:{voice}:p{pitch}:s{speed}:{kind}:{snr_db:.0f}dB"
        # Some speech_commands recordings are shorter than 1 s; get_dataset.py pads them
        # with zeros, whose frames give MFCC 0 = 40 ln(1e-6) * 2 / sqrt(80) = -123.6, the
        # bottom of the int8 model's input range.
        if rng.random() < cfg["short_frac"]:
            end = int(rng.uniform(min(start + len(speech) + 800, n), n))
            y[end:] = 0.0
            text += f":{end}"
    y = np.clip(np.round(y / np.abs(y).max() * 20000.0), -32768, 32767)   # int16 file
    return y / y.max(), text                   # get_dataset: wav / tf.reduce_max(wav)


def synth_kws(split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """MFCC features (N x 49 x 10), labels and descriptions of the stored KWS split."""
    rng = np.random.default_rng(_SEEDS[("dscnn", split)])
    lab = np.tile(np.arange(len(KWS_LABELS)), KWS_PER_CLASS[split])
    lab = lab[rng.permutation(len(lab))]
    clips, texts = zip(*(_kws_clip(rng, split, int(c)) for c in lab))
    return kws_mfcc(np.stack(clips)), lab, list(texts)


# ToyCar-like machines: calib and test use different machine instances (motor speeds,
# harmonic colour, noise), as DCASE's machine IDs.
AD_CLIPS = {"calib": 16, "test": 50}
AD_VECTORS_PER_CLIP = {"calib": 4, "test": 4}


#: Knobs of the ToyCar-like sound (see _toycar); ranges are drawn per clip. Chosen so that
#: the mean log-mel envelope is the one the reference autoencoder reconstructs best (its
#: fixed point: about -14 dB at 50..200 Hz falling to about -45 dB at 7 kHz, nearly
#: nothing below 50 Hz): a steep 55 Hz high-pass, noise above the harmonics, a level of
#: -44..-30 dB RMS re full scale. Louder, more tonal or flatter clips reconstruct worse.
_AD_CFG: dict = {
    "f0": (90.0, 320.0), "tilt": (0.8, 1.3), "formant_gain": (0.0, 1.0),
    "noise_slope": (0.7, 1.3), "hnr_db": (-12.0, 0.0), "bg_db": (-26.0, -10.0),
    "level_db": (-44.0, -30.0), "hp_hz": 55.0, "hp_order": 16, "am": (0.1, 0.5),
}


def _toycar(rng: np.random.Generator) -> np.ndarray:
    """10 s of a toy car's motor at 16 kHz: float samples as librosa.load gives them.

    A DC motor and gearbox: a harmonic series over a slowly wandering fundamental (the
    car's speed changes along the track) with a random spectral envelope, amplitude
    modulated as the car passes the microphone, brush / running noise that follows the
    motor, and a factory-like background (coloured noise or hum), at a random recording
    gain. Motor harmonics and noise fall off about 6 dB per octave (power ~ 1 / f^2).
    """
    cfg = _AD_CFG
    n = int(AD_CLIP_SECONDS * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.uniform(*cfg["f0"])
    drift = np.cumsum(rng.standard_normal(n // 1600 + 2))    # random walk, 10 points/s
    drift = np.interp(np.arange(n) / 1600.0, np.arange(len(drift)), drift)
    drift = drift / (np.abs(drift).max() + 1e-9)
    f_inst = f0 * (1.0 + rng.uniform(0.03, 0.15) * drift
                   + 0.02 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t))
    phase = 2 * np.pi * np.cumsum(f_inst) / SAMPLE_RATE
    k = np.arange(1, int(7800.0 / (f0 * 1.2)) + 1)[:, None]
    env = (k ** -rng.uniform(*cfg["tilt"])) * np.exp(rng.normal(0.0, 0.5, k.shape))
    # A gear-mesh / housing resonance somewhere between 0.5 and 3 kHz.
    fres = rng.uniform(500.0, 3000.0)
    env *= 1.0 + rng.uniform(*cfg["formant_gain"]) * np.exp(
        -0.5 * (np.log(k * f0 / fres) / 0.25) ** 2)
    motor = (env * np.sin(k * phase + rng.uniform(0, 2 * np.pi, k.shape))).sum(0)
    motor /= np.sqrt(np.mean(motor ** 2))
    slope = rng.uniform(*cfg["noise_slope"])
    brush = _shaped_noise(rng, n, lambda f: (f / 200.0) ** -slope / (1.0 + (200.0 / f) ** 2))
    brush *= 1.0 + 0.3 * np.sin(phase)                         # noise locked to the shaft
    # Passing the microphone: slow amplitude modulation.
    am = 1.0 + rng.uniform(*cfg["am"]) * np.sin(2 * np.pi * rng.uniform(0.1, 0.6) * t
                                                 + rng.uniform(0, 2 * np.pi))
    bg_kind = ("pink", "brown", "hum")[rng.integers(3)]
    bg = _background(rng, bg_kind, n)
    hnr = 10.0 ** (rng.uniform(*cfg["hnr_db"]) / 20.0)
    y = (am * (hnr * motor + brush) / np.sqrt(1.0 + hnr ** 2)
         + 10.0 ** (rng.uniform(*cfg["bg_db"]) / 20.0) * bg)
    # Recording chain: a steep high-pass (no subsonic energy) and a random level.
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE), 1e-3)
    hp = 1.0 / np.sqrt(1.0 + (cfg["hp_hz"] / f) ** (2 * cfg["hp_order"]))
    y = np.fft.irfft(np.fft.rfft(y) * hp, n)
    y *= 10.0 ** (rng.uniform(*cfg["level_db"]) / 20.0) / np.sqrt(np.mean(y ** 2))
    return np.clip(np.round(y * 32768.0), -32768, 32767) / 32768.0   # 16-bit file


def synth_ad(split: str) -> tuple[np.ndarray, np.ndarray]:
    """640-vectors (N x 640) and their clip index, several spread over each clip."""
    rng = np.random.default_rng(_SEEDS[("ad", split)])
    vecs, clip = [], []
    per = AD_VECTORS_PER_CLIP[split]
    for c in range(AD_CLIPS[split]):
        v = ad_vectors(ad_log_mel(_toycar(rng)))
        pos = np.sort(rng.choice(len(v), per, replace=False))
        vecs.append(v[pos])
        clip += [c] * per
    return np.concatenate(vecs), np.asarray(clip)


def write_features() -> None:
    """Rebuild models/mlperf_tiny/{dscnn,ad}_features.npz (float16, compressed)."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("--write needs the espeak-ng program (Debian: apt-get install espeak-ng)")
    FEATURE_DIR.mkdir(parents=True, exist_ok=True)
    t = time.time()
    kws: dict[str, np.ndarray] = {"labels": np.asarray(KWS_LABELS)}
    for split in SPLITS:
        x, lab, texts = synth_kws(split)
        kws[split], kws[f"{split}_label"] = x.astype(np.float16), lab.astype(np.int8)
        kws[f"{split}_source"] = np.asarray(texts)
    np.savez_compressed(DSCNN_NPZ, **kws)  # type: ignore[arg-type]
    print(f"{DSCNN_NPZ.relative_to(ROOT)}: {DSCNN_NPZ.stat().st_size / 1024:.0f} KiB "
          f"({time.time() - t:.1f} s)")
    t = time.time()
    ad: dict[str, np.ndarray] = {}
    for split in SPLITS:
        x, clip = synth_ad(split)
        ad[split], ad[f"{split}_clip"] = x.astype(np.float16), clip.astype(np.int16)
    np.savez_compressed(AD_NPZ, **ad)  # type: ignore[arg-type]
    print(f"{AD_NPZ.relative_to(ROOT)}: {AD_NPZ.stat().st_size / 1024:.0f} KiB "
          f"({time.time() - t:.1f} s)")
    _load_npz.cache_clear()


# --------------------------------------------------------------------------------------
# Checks: ranges, determinism, the models on the test inputs.
# --------------------------------------------------------------------------------------

#: Input range of each reference int8 .tflite (scale * (q - zero point), q in -128..127):
#: what the benchmark's own calibration set spans, for comparison.
TFLITE_INPUT_RANGE = {"vww": (0.0, 1.0), "resnet8": (0.0, 255.0),
                      "dscnn": (-123.37, 25.73), "ad": (-84.85, 14.86)}


def _find_onnx(name: str) -> Path | None:
    """models/mlperf_tiny/<name>.onnx (tools/mlperf_trained.py's names), if it exists."""
    path = FEATURE_DIR / f"{name}.onnx"
    return path if path.exists() else None


def check() -> None:
    """Print ranges, check determinism, run the ONNX models where present."""
    for name in NAMES:
        t = time.time()
        a = {s: inputs(name, s) for s in SPLITS}
        dt = time.time() - t
        same = all(np.array_equal(a[s], inputs(name, s)) for s in SPLITS)
        prefix = np.array_equal(inputs(name, "test", 10), a["test"][:10])
        for s in SPLITS:
            x = a[s]
            q = np.percentile(x, [1, 50, 99])
            print(f"{name:8s} {s:5s} {x.shape!s:18s} {x.dtype} min {x.min():8.2f}  "
                  f"p1 {q[0]:8.2f}  p50 {q[1]:8.2f}  p99 {q[2]:8.2f}  max {x.max():8.2f}")
        lo, hi = TFLITE_INPUT_RANGE[name]
        print(f"{'':14s}int8 tflite input range [{lo:.2f}, {hi:.2f}]; deterministic {same}, "
              f"prefix-stable {prefix}; both splits {dt:.2f} s")
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: no model check")
        return
    for name in NAMES:
        path = _find_onnx(name)
        if path is None:
            print(f"{name}: no ONNX model in {FEATURE_DIR.relative_to(ROOT)}")
            continue
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = inputs(name, "test")
        if len(inp.shape) == 4 and inp.shape[-1] in (1, 3) and inp.shape[1] not in (1, 3):
            x = x.transpose(0, 2, 3, 1)                        # an NHWC export
        y = np.concatenate([sess.run(None, {inp.name: x[i:i + 1]})[0] for i in range(len(x))])
        print(f"{name}: {path.name}")
        if name == "ad":
            mse = np.mean((y.reshape(len(x), -1) - x) ** 2, axis=1)
            print(f"  reconstruction MSE per vector: mean {mse.mean():.2f}, median "
                  f"{np.median(mse):.2f}, p90 {np.percentile(mse, 90):.2f} "
                  "(reference ToyCar normal clips: mean 9.7)")
            lo, hi = TFLITE_INPUT_RANGE[name]
            u = np.random.default_rng(0).uniform(lo, hi, x.shape).astype(np.float32)
            yu = np.concatenate([sess.run(None, {inp.name: u[i:i + 1]})[0]
                                 for i in range(len(u))])
            print(f"  for contrast, uniform noise over the int8 input range: MSE "
                  f"{np.mean((yu - u) ** 2):.0f}")
            continue
        pred = y.argmax(axis=1)
        hist = np.bincount(pred, minlength=y.shape[1])
        print(f"  predicted class histogram: {hist.tolist()}")
        if name in ("vww", "dscnn"):
            lab = labels(name, "test")
            names = VWW_LABELS if name == "vww" else KWS_LABELS
            recall = {names[c]: round(float(np.mean(pred[lab == c] == c)), 2)
                      for c in range(len(names)) if np.any(lab == c)}
            print(f"  top-1 vs labels: {np.mean(pred == lab):.3f}; per class {recall}")
            if name == "dscnn":
                kw = lab < 10
                print(f"  top-1 on the 10 spoken keywords: {np.mean(pred[kw] == lab[kw]):.3f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true",
                    help="synthesize the audio and rewrite the two feature npz files")
    args = ap.parse_args(argv)
    if args.write:
        write_features()
    check()


if __name__ == "__main__":
    main()
