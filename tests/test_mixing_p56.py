"""P.56 active speech level (VOICEBOX activlev) on real speech from ../shared/corpora/fsdd."""

import math

import numpy as np
import pytest
import soundfile as sf

from deepclust.mixing.p56 import _causal_running_max, active_level, normalise_active_level


def _db(power):
    return 10 * math.log10(power)


@pytest.fixture(scope="module")
def speech(fsdd_dir):
    """Three digits by one speaker, concatenated: ~1.5 s of real 8 kHz speech with short pauses."""
    parts = [sf.read(fsdd_dir / f"{d}_jackson_0.wav", dtype="float64")[0] for d in (3, 5, 7)]
    return np.concatenate(parts), 8000


def test_running_max_is_causal_window_of_n_samples():
    rng = np.random.default_rng(0)
    x = rng.integers(-50, 50, size=300)
    for n in (1, 2, 5, 8, 61):
        expected = [x[max(0, p - n + 1) : p + 1].max() for p in range(x.size)]
        np.testing.assert_array_equal(_causal_running_max(x, n, -(10**6)), expected)


def test_power_of_two_scaling_scales_level_exactly(speech):
    x, sr = speech
    level, activity = active_level(x, sr)
    # the 3 dB threshold grid is anchored at powers of 2: scaling by 2 moves every bin by exactly 2
    scaled_level, scaled_activity = active_level(4.0 * x, sr)
    assert scaled_level == pytest.approx(16.0 * level, rel=1e-9)
    assert scaled_activity == pytest.approx(activity, rel=1e-9)


def test_arbitrary_scaling_scales_level(speech):
    x, sr = speech
    level, _ = active_level(x, sr)
    for gain in (0.123, 0.7, 1.9):
        assert _db(active_level(gain * x, sr)[0]) - _db(level) == pytest.approx(20 * math.log10(gain), abs=0.02)


def test_appended_silence_leaves_active_level_but_lowers_rms(speech):
    x, sr = speech
    level, activity = active_level(x, sr)
    padded = np.concatenate([x, np.zeros(3 * sr)])
    padded_level, padded_activity = active_level(padded, sr)
    assert abs(_db(padded_level) - _db(level)) < 0.1
    assert _db(np.mean(padded**2)) < _db(np.mean(x**2)) - 3.0  # plain RMS drops by > 3 dB
    assert padded_activity < 0.5 * activity


def test_pause_lowers_activity_not_active_level(speech):
    x, sr = speech
    half = x.size // 2
    paused = np.concatenate([x[:half], np.zeros(3 * sr), x[half:]])
    level, activity = active_level(x, sr)
    paused_level, paused_activity = active_level(paused, sr)
    assert 0.0 < paused_activity < 0.5 * activity <= 0.5
    # only the 0.2 s hangover after the cut counts as active: under 1 dB, while RMS drops > 5 dB
    assert abs(_db(paused_level) - _db(level)) < 1.0
    assert _db(np.mean(paused**2)) < _db(np.mean(x**2)) - 5.0
    assert _db(paused_level) > _db(np.mean(paused**2)) + 3.0


def test_level_of_resampled_speech_agrees_across_rates(speech):
    from scipy.signal import resample_poly

    x, sr = speech
    upsampled = resample_poly(x, 2, 1)  # 16 kHz: the 5.5 kHz low-pass comes into play
    assert abs(_db(active_level(upsampled, 2 * sr)[0]) - _db(active_level(x, sr)[0])) < 0.5


def test_normalised_speech_has_zero_db_active_level(speech):
    x, sr = speech
    y = normalise_active_level(0.05 * x, sr)
    assert _db(active_level(y, sr)[0]) == pytest.approx(0.0, abs=0.02)


def test_silence_has_zero_level_and_cannot_be_normalised():
    assert active_level(np.zeros(8000), 8000) == (0.0, 0.0)
    with pytest.raises(ValueError, match="all-zero"):
        normalise_active_level(np.zeros(8000), 8000)


@pytest.mark.parametrize("bad", [np.zeros(0), np.zeros((2, 100)), np.array([0.1, np.nan, 0.2])])
def test_unusable_input_raises(bad):
    with pytest.raises(ValueError):
        active_level(bad, 8000)
