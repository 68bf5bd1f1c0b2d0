"""Rooms, noise and channels for training mixtures: targets are what a mask can give, noise is in no
target, every draw is seeded, and each condition has an off switch."""

import numpy as np
import pytest
import torch

from deepclust.features.extract import FeatureConfig
from deepclust.training.augment import AugmentConfig, Augmenter
from deepclust.training.dynamic_mixing import DynamicMixConfig, DynamicMixing, SourcePool, mixture_batch


@pytest.fixture(scope="module")
def pool(corpora_dir):
    from deepclust.corpora.sources import CorpusSource, prepare_sources

    corpus = prepare_sources([CorpusSource(str(corpora_dir / "librispeech-speakers"), "librispeech")])
    return SourcePool(corpus[corpus["subset"] == "train"].head(6), 8000)


def _speech(pool, seed=0, samples=16000):
    return pool.draw(np.random.default_rng(seed), 2, samples, 5.0, (0.0, 0.0))[1].astype(np.float64)


def test_in_a_room_the_mixture_holds_the_reverberation_and_the_targets_the_early_part(pool):
    augmenter = Augmenter(AugmentConfig(room_probability=1.0, rooms=4, rt60_range=(0.6, 0.8)), 8000, 2, seed=0)
    sources = _speech(pool)
    mixture, targets = augmenter(np.random.default_rng(1), sources)
    assert mixture.shape == (16000,) and targets.shape == (2, 16000)
    late = mixture - targets.sum(0)  # what no target holds: the late reverberation
    assert np.sqrt(np.mean(late**2)) > 0.05 * np.sqrt(np.mean(mixture**2))
    # The targets keep the talkers' levels (early images normalised to unit energy), within a few dB.
    for dry, early in zip(sources, targets):
        ratio_db = 10 * np.log10(np.sum(early**2) / np.sum(dry**2))
        assert -4.0 < ratio_db < 4.0, ratio_db
    again = augmenter(np.random.default_rng(1), sources)
    assert np.array_equal(again[0], mixture) and np.array_equal(again[1], targets)


def test_noise_is_in_the_mixture_at_the_drawn_snr_and_in_no_target(pool, corpora_dir):
    config = AugmentConfig(noise_probability=1.0, snr_db_range=(10.0, 10.0), noise_root=str(corpora_dir / "noise"))
    augmenter = Augmenter(config, 8000, 2, seed=0)
    assert len(augmenter.noise) > 100  # the real noise clips, near-silent ones left out
    sources = _speech(pool)
    for seed in range(4):
        mixture, targets = augmenter(np.random.default_rng(seed), sources)
        assert np.array_equal(targets, sources)
        noise = mixture - sources.sum(0)
        snr = 10 * np.log10(np.mean(sources.sum(0) ** 2) / np.mean(noise**2))
        assert snr == pytest.approx(10.0, abs=0.01)


def test_a_channel_filters_mixture_and_targets_alike(pool):
    augmenter = Augmenter(AugmentConfig(channel_probability=1.0, telephone_share=1.0), 8000, 2)
    sources = _speech(pool)
    mixture, targets = augmenter(np.random.default_rng(0), sources)
    assert np.allclose(mixture, targets.sum(0), atol=1e-9)  # a linear filter of the whole recording
    freqs = np.fft.rfftfreq(mixture.size, 1 / 8000)

    def low_to_band(signal):
        spectrum = np.abs(np.fft.rfft(signal)) ** 2
        return spectrum[freqs < 100].mean() / spectrum[(freqs > 400) & (freqs < 3000)].mean()

    # The telephone band's high-pass at 300 Hz: below 100 Hz at least 15 dB lower than before, relative
    # to the voice band.
    assert low_to_band(mixture) < 10**-1.5 * low_to_band(sources.sum(0))


def test_bins_no_talker_owns_get_no_weight(pool):
    augmenter = Augmenter(AugmentConfig(noise_probability=1.0, snr_db_range=(0.0, 0.0)), 8000, 2)
    sources = _speech(pool)
    mixture, targets = augmenter(np.random.default_rng(0), sources)
    with_noise = mixture_batch(targets[None], FeatureConfig(), None, mixture[None])
    clean = mixture_batch(targets[None], FeatureConfig(), None)
    assert with_noise["weight"].sum() < clean["weight"].sum()
    assert with_noise["log_mag"].shape == clean["log_mag"].shape


def test_every_condition_off_gives_the_unaugmented_batches_bit_for_bit(pool):
    mix = DynamicMixConfig(cv_mixtures=4, stats_mixtures=16)
    plain = DynamicMixing(pool, pool, FeatureConfig(), mix, seed=0)
    off = DynamicMixing(pool, pool, FeatureConfig(), mix, seed=0, augment=AugmentConfig(rooms=3))
    on = DynamicMixing(
        pool, pool, FeatureConfig(), mix, seed=0, augment=AugmentConfig(noise_probability=1.0, channel_probability=1.0)
    )
    a, b, c = (next(s.training_batches([0, 0, 0], 40, 3, 1)) for s in (plain, off, on))
    for key in a:  # tensors bit for bit; the batch also carries its STFT settings
        assert torch.equal(a[key], b[key]) if torch.is_tensor(a[key]) else a[key] == b[key], key
    assert not torch.equal(a["log_mag"], c["log_mag"])
    assert torch.equal(c["log_mag"], next(on.training_batches([0, 0, 0], 40, 3, 1))["log_mag"])  # seeded
