"""Speed perturbation in dynamic mixing: a talker played faster or slower is a new voice (pitch and tempo together).

That it leaves the validation list alone: tests/test_training_dynamic_mixing.py."""

import numpy as np
import pytest

from deepclust.training.dynamic_mixing import DynamicMixConfig, SourcePool, speed_changed

RATE = 8000


def _tone(hz: float, seconds: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def _pitch(x: np.ndarray) -> float:
    """The strongest frequency of ``x`` in Hz (zero-padded FFT: 0.5 Hz bins)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size), n=16 * RATE))
    return float(np.argmax(spectrum) * RATE / (16 * RATE))


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.05, 1.1])
def test_a_long_utterance_gives_a_stretch_of_the_asked_length_at_the_new_pitch(factor):
    out = speed_changed(np.random.default_rng(0), _tone(400.0, 3.0), 4000, factor)
    assert out.shape == (4000,) and out.dtype == np.float32
    assert abs(_pitch(out) - 400.0 * factor) < 1.0, _pitch(out)
    # The cut edges leave no filter ramp: the stretch keeps the tone's level from end to end.
    assert np.abs(out[:200]).max() > 0.28 and np.abs(out[-200:]).max() > 0.28


def test_a_short_utterance_is_resampled_whole_and_its_length_follows_the_speed():
    short = _tone(300.0, 0.5)
    slower, faster = (speed_changed(np.random.default_rng(0), short, 8000, f) for f in (0.9, 1.1))
    assert slower.size == pytest.approx(short.size / 0.9, abs=2) and faster.size == pytest.approx(
        short.size / 1.1, abs=2
    )
    assert abs(_pitch(slower) - 270.0) < 2.0 and abs(_pitch(faster) - 330.0) < 2.0


def _tone_pool() -> SourcePool:
    """Four talkers, each a tone of its own (200, 300, 500, 700 Hz): a source's pitch says its speed."""
    return SourcePool.from_waveforms([(f"t{hz}-u", f"t{hz}", _tone(hz, 2.0)) for hz in (200, 300, 500, 700)], RATE)


def test_every_talker_of_a_perturbed_mixture_is_at_one_of_the_speeds_and_none_as_recorded():
    pool = _tone_pool()
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(30):
        _, sources = pool.draw(rng, 2, 3200, 5.0, (0.0, 0.0), speed_probability=1.0, speed_factors=(0.9, 1.1))
        for source in sources:
            pitch = _pitch(source)
            base = min((200, 300, 500, 700), key=lambda hz: min(abs(pitch - hz * 0.9), abs(pitch - hz * 1.1)))
            factor = 0.9 if abs(pitch - base * 0.9) < abs(pitch - base * 1.1) else 1.1
            assert abs(pitch - base * factor) < 2.0, pitch
            seen.add(factor)
    assert seen == {0.9, 1.1}


def test_half_the_talkers_are_perturbed_at_probability_one_half():
    pool = _tone_pool()
    rng = np.random.default_rng(2)
    changed = []
    for _ in range(100):
        _, sources = pool.draw(rng, 2, 3200, 5.0, (0.0, 0.0), speed_probability=0.5, speed_factors=(1.1,))
        changed += [min(abs(_pitch(s) - hz) for hz in (200, 300, 500, 700)) > 5.0 for s in sources]
    assert 0.4 < np.mean(changed) < 0.6, np.mean(changed)


@pytest.mark.parametrize("settings", [{"speed_probability": 1.5}, {"speed_factors": ()}, {"speed_factors": (0.9, 3.0)}])
def test_speed_settings_out_of_range_are_refused(settings):
    with pytest.raises(ValueError, match="speed"):
        DynamicMixConfig(**settings)
