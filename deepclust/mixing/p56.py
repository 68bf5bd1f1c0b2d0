"""Active speech level, ITU-T P.56 method B, as VOICEBOX ``activlev`` computes it.

The wsj0-2mix / wsj0-3mix recipe (``create_wav_2speakers.m``) normalises every source with
``activlev(s, 8000, 'n')`` before applying the listed SNR gain, so "0 dB" in a mix list means "0 dB
active speech level", not 0 dB RMS: pauses do not lower a speaker's level. This module follows
VOICEBOX ``activlev.m`` (M. Brookes, revision 9407, 2017, as redistributed beside the recipe scripts)
step by step, default mode (Chebyshev-2 input filters, no weighting filter). Older revisions (2012)
lacked step 2's zero padding and so counted slightly less hangover at the end of an utterance.

1. band-limit: 5th-order high-pass at 200 Hz (as three biquads); a 5th-order low-pass at 5.5 kHz only
   when ``sr >= 2.2 * 5500`` (so not at 8 kHz);
2. append 0.35 s of zeros so the hangover of the last word is counted (this makes the level
   independent of trailing silence);
3. envelope: ``|x|`` through two cascaded one-pole smoothers, time constant 0.03 s, DC gain 1;
4. hangover: running max of ``log2(envelope**2)`` over ``ceil(0.2 * sr) + 1`` samples;
5. thresholds on a geometric grid, 3 dB apart (``2**k`` in power), 20 of them below the peak; for
   each threshold ``c_j`` the level over the samples above it is ``a_j = sum(x**2) / count_j``;
6. the active level is where ``a_j - c_j`` crosses the margin M = 15.9 dB, linearly interpolated (dB).
"""

from __future__ import annotations

import math

import numpy as np

N_BINS = 20  # 60 dB range at 3 dB per bin
MARGIN_DB = 15.9  # P.56 margin M between the active level and the activity threshold
ENVELOPE_TIME_CONSTANT_S = 0.03
HANGOVER_S = 0.2
ZERO_PAD_S = 0.35
HIGHPASS_HZ = 200.0
LOWPASS_HZ = 5500.0

# s-plane zeros (row 0) and poles (row 1) of the 5th-order Chebyshev-2 high-pass prototype used by
# activlev (passband ripple < 0.25 dB, stopband < -50 dB, -0.25 dB at w=1).
_C25 = np.array(
    [
        [0.37843443673309j, 0.23388534441447j],
        [-0.20640255179496 + 0.73942185906851j, -0.54036889596392 + 0.45698784092898j],
    ]
)
_C25_ZP = np.concatenate([np.array([[0.0], [-0.66793268833792]]), _C25, np.conj(_C25)], axis=1)

_SENTINEL_EXPONENT = -(10**6)  # stands for log2(0) = -inf in the integer exponent track


def _highpass_sections(sr: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 200 Hz high-pass as (real pole/zero, biquad, biquad), Nyquist gain 1, as activlev builds it."""
    zl = 2.0 / (1.0 - _C25_ZP * math.tan(HIGHPASS_HZ * math.pi / sr)) - 1.0  # bilinear transform
    # rows: numerator (zeros), denominator (poles); columns: 1, -z1, -2Re(z2), -2Re(z3), |z2|^2, |z3|^2
    abl = np.stack(
        [
            np.ones(2),
            -zl[:, 0].real,
            -2 * zl[:, 1].real,
            -2 * zl[:, 2].real,
            np.abs(zl[:, 1]) ** 2,
            np.abs(zl[:, 2]) ** 2,
        ],
        axis=1,
    )
    # each section evaluated at z = -1 (Nyquist); scale so the cascade has gain 1 there
    hfg = (abl @ [1, -1, 0, 0, 0, 0]) * (abl @ [1, 0, -1, 0, 1, 0]) * (abl @ [1, 0, 0, -1, 0, 1])
    b1 = abl[0, [0, 1]] * hfg[1] / hfg[0]
    return [
        (b1, abl[1, [0, 1]]),
        (abl[0, [0, 2, 4]], abl[1, [0, 2, 4]]),
        (abl[0, [0, 3, 5]], abl[1, [0, 3, 5]]),
    ]


def _lowpass(sr: float) -> tuple[np.ndarray, np.ndarray]:
    """The 5.5 kHz low-pass (same prototype, s -> 1/s), DC gain 1."""
    zh = 2.0 / (_C25_ZP / math.tan(LOWPASS_HZ * math.pi / sr) - 1.0) + 1.0
    ah = np.real(np.poly(zh[1]))
    bh = np.real(np.poly(zh[0]))
    return bh * ah.sum() / bh.sum(), ah


def _causal_running_max(x: np.ndarray, n: int, fill) -> np.ndarray:
    """``y[p] = max(x[p-n+1 .. p])``, ``fill`` before the start (VOICEBOX ``maxfilt(x, 1, n)``)."""
    padded = np.concatenate([np.full(n - 1, fill, dtype=x.dtype), x])
    # the centred window at padded index p + n//2 spans padded[p : p + n] = x[p-n+1 .. p]
    from scipy.ndimage import maximum_filter1d  # SciPy is imported on first use: see active_level

    centred = maximum_filter1d(padded, size=n, mode="nearest")
    return centred[n // 2 : n // 2 + x.size]


def active_level(x: np.ndarray, sr: int) -> tuple[float, float]:
    """Active speech level of ``x`` ``(samples,)`` at ``sr`` Hz, ITU-T P.56 method B (VOICEBOX activlev).

    Returns ``(level, activity)``: ``level`` is the mean power over active speech in units of
    (full-scale amplitude)**2, so ``10*log10(level)`` is dB re full scale; ``activity`` is the
    activity factor in [0, 1] (total power / active level; includes the 0.35 s padding as activlev
    does). All-zero input gives ``(0.0, 0.0)``. Raises ``ValueError`` for empty, non-1-D or
    non-finite input.
    """
    # Imported here, not at the top: every command's start-up (the CLI reads the mixing stage's config) would
    # pay 0.2-0.9 s for SciPy's signal module; only mixing needs it.
    from scipy.signal import lfilter

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"active_level expects (samples,), got shape {x.shape}")
    if x.size == 0:
        raise ValueError("active_level of an empty signal")
    if not np.all(np.isfinite(x)):
        raise ValueError("active_level of a signal with non-finite samples")
    sr = float(sr)

    sp = np.concatenate([x, np.zeros(math.ceil(ZERO_PAD_S * sr))])
    sq = sp
    for b, a in _highpass_sections(sr):
        sq = lfilter(b, a, sq)
    if sr >= LOWPASS_HZ * 2.2:  # activlev drops the low-pass at low sample rates
        bh, ah = _lowpass(sr)
        sq = lfilter(bh, ah, sq)

    n_samples = sq.size
    sum_squares = float(np.dot(sq, sq))
    if sum_squares <= 0.0:
        return 0.0, 0.0

    g = math.exp(-1.0 / (sr * ENVELOPE_TIME_CONSTANT_S))
    envelope = lfilter([(1 - g) ** 2], [1.0, -2 * g, g * g], np.abs(sq))
    mantissa, exponent = np.frexp(envelope**2)  # 2**exponent is the upper edge of the 3 dB bin
    exponent = exponent.astype(np.int64)
    exponent[mantissa == 0] = _SENTINEL_EXPONENT
    n_hang = math.ceil(HANGOVER_S * sr) + 1
    exponent = _causal_running_max(exponent, n_hang, _SENTINEL_EXPONENT)

    e_max = int(exponent.max()) + 1
    # bin k (1-based) holds 2**(e_max-k-1) <= env**2 < 2**(e_max-k); everything lower goes in the last
    bins = np.minimum(e_max - exponent, N_BINS)
    counts_above = np.cumsum(np.bincount(bins, minlength=N_BINS + 1)[1 : N_BINS + 1]).astype(np.float64)

    level_db = 10 * np.log10(sum_squares / counts_above)  # a_j: level if active means "above c_j"
    threshold_db = 10 * math.log10(2) * (e_max - np.arange(1, N_BINS + 1) - 1)  # c_j, lower bin edges
    margin = level_db - threshold_db - MARGIN_DB
    crossing = np.flatnonzero((margin[:-1] < 0) & (margin[1:] >= 0))
    if crossing.size:
        j = int(crossing[0])
        fraction = 1.0 / (1.0 - margin[j + 1] / margin[j])  # linear interpolation of the crossing
    elif margin[-1] <= 0:  # never reaches the margin: take the bottom of the lowest bin
        j, fraction = N_BINS - 2, 1.0
    else:  # always above it: take the bottom of the highest bin
        j, fraction = 0, 0.0
    active_db = level_db[j] + fraction * (level_db[j + 1] - level_db[j])
    level = float(10 ** (active_db / 10))
    activity = sum_squares / (n_samples * level)
    return level, float(activity)


def normalise_active_level(x: np.ndarray, sr: int) -> np.ndarray:
    """``x / sqrt(active_level(x, sr)[0])``: 0 dB active level, as ``activlev(x, sr, 'n')``.

    ``x`` is ``(samples,)``; returns float64 of the same shape. Unlike activlev (which returns silence
    unchanged) this raises ``ValueError`` for an all-zero signal, which has no level to normalise.
    """
    level, _ = active_level(x, sr)
    if level <= 0.0:
        raise ValueError("cannot normalise the active level of an all-zero signal")
    return np.asarray(x, dtype=np.float64) / math.sqrt(level)
