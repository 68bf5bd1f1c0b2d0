"""Conditions for dynamically mixed training mixtures: rooms, background noise, microphones and channels.

Read close-talk speech alone teaches a network nothing about the recordings archive users bring
(phones, laptops, rooms, appliances). Each mixture drawn by ``SourcePool.draw`` may pass, in this order:

1. **a room** (probability ``room_probability``): one shoebox room per mixture, simulated by the image
   method (pyroomacoustics), RT60 uniform in ``rt60_range``, all talkers and one microphone in it. The
   mixture holds each talker's full reverberant image; the *target* of each talker is its direct path
   plus early reflections (the first ``early_ms`` = 50 ms of its impulse response, counted from the
   direct path). Why not the dry source: a mask on the mixture's spectrogram can remove late
   reverberation but cannot undo the early reflections (they fall inside one STFT window and colour the
   spectrum rather than smearing it), so a dry target asks for what masking cannot give and trains the
   network towards muffled estimates; 50 ms early images are the usual choice (e.g. Maciejewski et al.,
   WHAMR!, 2020, train towards them too) and what a listener hears as the talker. Impulse responses
   come from a bank of ``rooms`` rooms drawn once per seed, so a batch costs a few FFT convolutions.
2. **background noise** (``noise_probability``): a random stretch of a real noise recording (a folder
   given by ``noise_root``, e.g. ../shared/corpora/noise) or, when none is given or by a coin flip,
   coloured noise (white, pink or brown), at an SNR uniform in ``snr_db_range`` over the talkers' sum.
   Noise belongs to no talker: it is in the mixture, never in a target.
3. **a channel** (``channel_probability``): the whole recording (talkers and noise alike, as a microphone
   would take them) through a random band limit (telephone band 300-3,400 Hz, or a high-pass at
   50-300 Hz and a low-pass at 2.5-4 kHz) and a smooth random EQ of +-``eq_db`` dB; targets get the same
   filter, so a talker's target is that talker as this microphone heard them.
4. **level**: the overall gain (``DynamicMixConfig.gain_db_range``), as before.

Every choice is drawn from the mixture's own generator, so a batch is still a function of
``(seed, epoch, step)`` only. Each step has its own probability, 0 switches it off; all are 0 by default.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepclust.audio import read_audio
from deepclust.faults.errors import BadAudioError
from deepclust.pipeline.plan import JsonableConfig

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg")
QUIET_NOISE_DBFS = -70.0  # noise clips quieter than this are digital near-silence, not noise: skipped


@dataclass(frozen=True)
class AugmentConfig(JsonableConfig):
    """Which conditions training mixtures get, with what probability (each 0 = off; all 0 by default)."""

    room_probability: float = 0.0
    rt60_range: tuple[float, float] = (0.1, 0.8)
    early_ms: float = 50.0
    rooms: int = 300
    noise_probability: float = 0.0
    snr_db_range: tuple[float, float] = (0.0, 25.0)
    noise_root: str | None = None
    coloured_noise_share: float = 0.3
    channel_probability: float = 0.0
    eq_db: float = 6.0
    telephone_share: float = 0.4

    def __post_init__(self):
        for name in (
            "room_probability",
            "noise_probability",
            "channel_probability",
            "coloured_noise_share",
            "telephone_share",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.rt60_range[0] <= self.rt60_range[1]:
            raise ValueError(f"rt60_range must be increasing and positive, got {self.rt60_range}")

    @property
    def enabled(self) -> bool:
        """Whether any condition is ever applied."""
        return bool(self.room_probability or self.noise_probability or self.channel_probability)

    @classmethod
    def recipe(cls, noise_root: str | None = None) -> "AugmentConfig":
        """The shipped model's mix: about a quarter of mixtures in a room, a third with noise, a quarter
        through a channel, so that about 40 % stay clean (read close-talk speech is still a use case)."""
        return cls(room_probability=0.25, noise_probability=0.35, channel_probability=0.25, noise_root=noise_root)


def _noise_clips(root: str, sample_rate: int) -> list[np.ndarray]:
    clips = []
    for path in sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        try:
            waveform, _ = read_audio(str(path), target_sr=sample_rate)
        except BadAudioError as error:
            log.warning("augmentation skips noise file %s", error)
            continue
        rms = math.sqrt(float(np.mean(np.square(waveform, dtype=np.float64)))) if waveform.size else 0.0
        if rms > 0 and 20 * math.log10(rms) > QUIET_NOISE_DBFS:
            clips.append((waveform / rms).astype(np.float32))  # unit RMS: the SNR sets the level
    return clips


def _room_bank(config: AugmentConfig, sample_rate: int, max_talkers: int, seed: int) -> list[list[np.ndarray]]:
    """``rooms`` rooms, each a list of ``max_talkers`` impulse responses (talker -> the one microphone)."""
    import pyroomacoustics as pra

    rng = np.random.default_rng([seed, 7_000_010])
    bank = []
    for _ in range(config.rooms):
        size = np.array([rng.uniform(3, 10), rng.uniform(3, 8), rng.uniform(2.4, 4)])
        rt60 = float(rng.uniform(*config.rt60_range))
        try:
            absorption, max_order = pra.inverse_sabine(rt60, size)
        except ValueError:  # a room too small for this RT60 under Sabine's formula: take the next draw
            continue
        room = pra.ShoeBox(size, fs=sample_rate, materials=pra.Material(absorption), max_order=min(max_order, 20))
        margin = 0.5
        microphone = rng.uniform(margin, size - margin)
        for _ in range(max_talkers):
            room.add_source(rng.uniform(margin, size - margin))
        room.add_microphone(microphone)
        room.compute_rir()
        bank.append([np.asarray(room.rir[0][k], dtype=np.float64) for k in range(max_talkers)])
    return bank


def _coloured_noise(rng: np.random.Generator, samples: int) -> np.ndarray:
    """White (exponent 0), pink (1) or brown (2) noise of unit RMS."""
    exponent = int(rng.integers(0, 3))
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    frequencies = np.arange(spectrum.size, dtype=np.float64)
    frequencies[0] = 1.0
    noise = np.fft.irfft(spectrum / frequencies ** (exponent / 2), samples)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


class Augmenter:
    """Applies an ``AugmentConfig`` to one mixture's sources; see the module docstring for the order.

    ``max_talkers``: the largest K of any mixture (the room bank places that many talkers)."""

    def __init__(self, config: AugmentConfig, sample_rate: int, max_talkers: int, seed: int = 0):
        self.config, self.sample_rate = config, int(sample_rate)
        self.noise = (
            _noise_clips(config.noise_root, self.sample_rate)
            if (config.noise_probability and config.noise_root)
            else []
        )
        self.rooms = _room_bank(config, self.sample_rate, max_talkers, seed) if config.room_probability else []
        self.early = int(round(config.early_ms / 1000 * self.sample_rate))

    def _reverberate(self, rng, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from scipy import signal as sps  # SciPy's signal module on first use: the CLI reads AugmentConfig at start-up

        room = self.rooms[int(rng.integers(len(self.rooms)))]
        samples = sources.shape[1]
        images, targets = np.empty_like(sources), np.empty_like(sources)
        for k, source in enumerate(sources):
            rir = room[k]
            direct = int(np.argmax(np.abs(rir)))
            early = rir[: direct + self.early]
            # Scale so that the target keeps the source's level (the mixing rules' levels stay true).
            scale = 1.0 / max(float(np.sqrt(np.sum(early**2))), 1e-12)
            images[k] = sps.fftconvolve(source, rir * scale)[:samples]
            targets[k] = sps.fftconvolve(source, early * scale)[:samples]
        return images, targets

    def _noise(self, rng, samples: int) -> np.ndarray:
        if self.noise and rng.uniform() >= self.config.coloured_noise_share:
            clip = self.noise[int(rng.integers(len(self.noise)))]
            start = int(rng.integers(clip.size))
            repeats = math.ceil((start + samples) / clip.size)
            return np.tile(clip, repeats)[start : start + samples].astype(np.float64)
        return _coloured_noise(rng, samples)

    def _channel(self, rng) -> np.ndarray:
        """Second-order sections of a random band limit followed by a smooth EQ (as one filter)."""
        from scipy import signal as sps

        nyquist = self.sample_rate / 2
        if rng.uniform() < self.config.telephone_share:
            low, high = 300.0, min(3400.0, 0.95 * nyquist)
        else:
            low, high = rng.uniform(50, 300), min(rng.uniform(2500, 4000), 0.95 * nyquist)
        sections = [
            sps.butter(2, low, "highpass", fs=self.sample_rate, output="sos"),
            sps.butter(4, high, "lowpass", fs=self.sample_rate, output="sos"),
        ]
        for _ in range(int(rng.integers(1, 4))):  # one to three peaking bands
            centre, gain_db, q = (
                rng.uniform(200, 0.9 * high),
                rng.uniform(-self.config.eq_db, self.config.eq_db),
                rng.uniform(0.7, 2.0),
            )
            sections.append(_peaking(centre, gain_db, q, self.sample_rate))
        return np.concatenate(sections)

    def __call__(self, rng: np.random.Generator, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``sources (K, samples)`` float64, levels applied -> ``(mixture (samples,), targets (K, samples))``."""
        from scipy import signal as sps

        config = self.config
        mixture_parts, targets = sources, sources
        if self.rooms and rng.uniform() < config.room_probability:
            mixture_parts, targets = self._reverberate(rng, sources)
        mixture = mixture_parts.sum(0)
        if rng.uniform() < config.noise_probability:
            speech_power = float(np.mean(mixture**2))
            if speech_power > 0:
                snr_db = float(rng.uniform(*config.snr_db_range))
                mixture = mixture + self._noise(rng, mixture.size) * math.sqrt(speech_power / 10 ** (snr_db / 10))
        if rng.uniform() < config.channel_probability:
            sos = self._channel(rng)
            mixture = sps.sosfilt(sos, mixture)
            targets = sps.sosfilt(sos, targets, axis=-1)
        return mixture, targets


def _peaking(centre: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """One peaking-EQ biquad (RBJ's Audio EQ Cookbook) as a second-order section."""
    amplitude, omega = 10 ** (gain_db / 40), 2 * math.pi * centre / sample_rate
    alpha = math.sin(omega) / (2 * q)
    b = np.array([1 + alpha * amplitude, -2 * math.cos(omega), 1 - alpha * amplitude])
    a = np.array([1 + alpha / amplitude, -2 * math.cos(omega), 1 - alpha / amplitude])
    return np.concatenate([b / a[0], a / a[0]])[None, :]
