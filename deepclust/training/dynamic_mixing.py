"""Dynamic mixing: fresh training mixtures for every batch, drawn from source utterances held in memory.

With few utterances per speaker, a fixed list of premixed training mixtures is seen again and again as
training grows longer. Here every batch draws K distinct training speakers, one utterance of each, a
random crop, and relative levels by wsj0-2mix's rules (each source normalised to 0 dB P.56 active level,
measured on the whole utterance; the first scaled by +u dB and the second by -u dB, u uniform in [0, 2.5],
so the pair differs by 0-5 dB; further sources uniform in [-2.5, 2.5] dB), then the mixture and sources
are scaled together to a peak of 0.9 and by one random overall gain (``gain_db_range``), so that the
network meets quiet recordings too. Features are computed on the fly (one batched STFT).

Every batch is a function of ``(seed, epoch, step)`` only, so a resumed run continues exactly and the
sampler needs no checkpointed state. The validation set is a fixed list drawn from the cv speakers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from deepclust.audio import read_audio
from deepclust.faults.errors import BadAudioError
from deepclust.features.extract import FeatureConfig, dominant_source, loud_bins, network_input
from deepclust.features.normalisation import FeatureStats, RunningStats
from deepclust.features.stft import stft
from deepclust.mixing.mix import PEAK_AFTER_SCALING
from deepclust.mixing.p56 import active_level
from deepclust.model.chimera_loss import phase_sensitive_targets
from deepclust.pipeline.plan import JsonableConfig
from deepclust.training.augment import AugmentConfig, Augmenter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DynamicMixConfig(JsonableConfig):
    """How training mixtures are drawn.

    speaker_counts / speaker_count_weights: K of each batch, drawn with these weights (e.g. (2, 3)).
    max_snr_db: the pair's level difference is uniform in [0, max_snr_db] (wsj0-2mix: 5 dB).
    gain_db_range: overall gain of the scaled mixture (dB re a 0.9 peak), uniform in this range.
    cv_fraction: share of the training speakers held out for validation (early stopping, best model).
    cv_mixtures: size of the fixed validation list. cv_seconds: length of its crops.
    stats_mixtures: mixtures drawn (seeded) to estimate the input normalisation.
    same_source_probability: the share of training mixtures whose talkers all come from one source (the part of
        the speaker id before ``/``: one corpus), drawn with probability proportional to its speakers; the rest
        draw talkers from the whole pool (where one source is also possible, by chance). Talkers of different
        corpora differ in microphone and room as well as voice, a cue that a recording of two people in one
        place never gives: more same-source mixtures make the network separate by voice. 0 (the default)
        draws as before, bit for bit. Validation mixtures are drawn as before, so links stay comparable.
    speed_probability / speed_factors: the share of training talkers played faster or slower, by one of
        ``speed_factors`` (resampled: pitch and tempo change together, as Kaldi's and SpeechBrain's speed
        perturbation): each speed of a talker is a new voice, so a few hundred speakers give several times
        as many (Ko et al. 2015; SepFormer's dynamic mixing uses it). 0 (the default) draws as before, bit for
        bit; validation mixtures are never perturbed.
    """

    speaker_counts: tuple[int, ...] = (2,)
    speaker_count_weights: tuple[float, ...] | None = None
    max_snr_db: float = 5.0
    gain_db_range: tuple[float, float] = (-25.0, 0.0)
    cv_fraction: float = 0.05
    cv_mixtures: int = 256
    cv_seconds: float = 3.2
    stats_mixtures: int = 512
    same_source_probability: float = 0.0
    speed_probability: float = 0.0
    speed_factors: tuple[float, ...] = (0.9, 0.95, 1.05, 1.1)

    def __post_init__(self):
        if not 0.0 <= self.same_source_probability <= 1.0:
            raise ValueError(f"same_source_probability must be in [0, 1], got {self.same_source_probability}")
        if not 0.0 <= self.speed_probability <= 1.0:
            raise ValueError(f"speed_probability must be in [0, 1], got {self.speed_probability}")
        if not self.speed_factors or not all(0.5 <= f <= 2.0 for f in self.speed_factors):
            raise ValueError(f"speed_factors {list(self.speed_factors)} must be speeds between 0.5 and 2")
        if not self.speaker_counts or min(self.speaker_counts) < 2:
            raise ValueError(f"speaker_counts must be >= 2, got {self.speaker_counts}")
        weights = self.speaker_count_weights
        if weights is not None and len(weights) != len(self.speaker_counts):
            raise ValueError(
                f"speaker_count_weights {list(weights)} needs one weight per speaker count {list(self.speaker_counts)}"
            )
        if weights is not None and (min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"speaker_count_weights {list(weights)} must be >= 0 with a positive sum")


def _gains_db(rng: np.random.Generator, n_speakers: int, max_snr_db: float) -> list[float]:
    """wsj0-2mix's levels: +u and -u dB (u uniform in [0, max/2]), further sources uniform in [-max/2, max/2]."""
    half = float(rng.uniform(0.0, max_snr_db / 2))
    return [half, -half] + [float(rng.uniform(-max_snr_db / 2, max_snr_db / 2)) for _ in range(n_speakers - 2)]


class SourcePool:
    """Source utterances of some speakers, in memory at one sample rate, with their P.56 active levels.

    ``waveforms[i]`` float32 ``(samples,)``; ``levels[i]`` active power; ``speakers``: sorted speaker ids;
    ``by_speaker[s]``: indices of that speaker's utterances. Unreadable or silent files are skipped and
    listed in ``errors`` as ``(path, reason)``.
    """

    def __init__(self, rows: pd.DataFrame, sample_rate: int):
        self.sample_rate = int(sample_rate)
        self.waveforms: list[np.ndarray] = []
        self.levels: list[float] = []
        self.utterance_ids: list[str] = []
        self.errors: list[tuple[str, str]] = []
        by_speaker: dict[str, list[int]] = {}
        for row in rows.sort_values("utterance_id").itertuples():
            try:
                waveform, _ = read_audio(row.path, target_sr=self.sample_rate)
                level, _ = active_level(waveform, self.sample_rate)
                if not level > 0:
                    raise BadAudioError(row.path, "silent (active level 0)")
            except BadAudioError as error:
                self.errors.append((error.path, error.reason))
                log.warning("dynamic mixing skips %s", error)
                continue
            by_speaker.setdefault(str(row.speaker), []).append(len(self.waveforms))
            self.waveforms.append(waveform.astype(np.float32))
            self.levels.append(float(level))
            self.utterance_ids.append(str(row.utterance_id))
        self._index(by_speaker)

    def _index(self, by_speaker: dict[str, list[int]]) -> None:
        self.by_speaker = by_speaker
        self.speakers = sorted(by_speaker)
        if len(self.speakers) < 2:
            raise ValueError(f"dynamic mixing needs at least 2 speakers with usable audio, got {len(self.speakers)}")
        # Speaker indices per source (the id's part before "/", as split_cv_speakers reads it).
        self.by_source: dict[str, list[int]] = {}
        for index, speaker in enumerate(self.speakers):
            self.by_source.setdefault(speaker.split("/", 1)[0] if "/" in speaker else "", []).append(index)

    def _choose_speakers(self, rng: np.random.Generator, n_speakers: int, same_source_probability: float) -> np.ndarray:
        """Indices into ``speakers`` of ``n_speakers`` distinct talkers: with ``same_source_probability`` all of
        one source (chosen in proportion to its speakers, among sources with enough of them), else from the
        whole pool. A probability of 0 draws nothing extra, so earlier runs' batches are unchanged."""
        if same_source_probability > 0 and rng.random() < same_source_probability:
            sources = [members for members in self.by_source.values() if len(members) >= n_speakers]
            if sources:
                sizes = np.array([len(members) for members in sources], dtype=np.float64)
                members = sources[int(rng.choice(len(sources), p=sizes / sizes.sum()))]
                return np.asarray(members)[rng.choice(len(members), size=n_speakers, replace=False)]
        return rng.choice(len(self.speakers), size=n_speakers, replace=False)

    @classmethod
    def from_waveforms(cls, utterances: list[tuple[str, str, np.ndarray]], sample_rate: int) -> "SourcePool":
        """A pool of ``(utterance_id, speaker, waveform)`` already in memory (e.g. joined digits)."""
        pool = cls.__new__(cls)
        pool.sample_rate, pool.errors = int(sample_rate), []
        pool.waveforms, pool.levels, pool.utterance_ids = [], [], []
        by_speaker: dict[str, list[int]] = {}
        for utterance_id, speaker, waveform in utterances:
            level, _ = active_level(np.asarray(waveform, dtype=np.float64), pool.sample_rate)
            if not level > 0:
                pool.errors.append((utterance_id, "silent (active level 0)"))
                continue
            by_speaker.setdefault(str(speaker), []).append(len(pool.waveforms))
            pool.waveforms.append(np.asarray(waveform, dtype=np.float32))
            pool.levels.append(float(level))
            pool.utterance_ids.append(str(utterance_id))
        pool._index(by_speaker)
        return pool

    @property
    def seconds(self) -> float:
        """Total length of the utterances held, in seconds."""
        return sum(w.size for w in self.waveforms) / self.sample_rate

    def draw(
        self,
        rng: np.random.Generator,
        n_speakers: int,
        samples: int,
        max_snr_db: float,
        gain_db_range: tuple[float, float],
        augment: "Augmenter | None" = None,
        same_source_probability: float = 0.0,
        speed_probability: float = 0.0,
        speed_factors: tuple[float, ...] = (),
    ) -> tuple[np.ndarray, np.ndarray]:
        """One mixture ``(samples,)`` and its talkers' targets ``(K, samples)``, float32, levels applied.

        Without ``augment`` the mixture is the targets' sum; with it, the mixture may hold a room's
        reverberation and noise that the targets do not (``deepclust.training.augment``).
        ``same_source_probability``, ``speed_probability``, ``speed_factors``: ``DynamicMixConfig``'s."""
        chosen = self._choose_speakers(rng, n_speakers, same_source_probability)
        gains_db = _gains_db(rng, n_speakers, max_snr_db)
        sources = np.zeros((n_speakers, samples), dtype=np.float64)
        for k, speaker_index in enumerate(chosen):
            indices = self.by_speaker[self.speakers[speaker_index]]
            utterance = indices[int(rng.integers(len(indices)))]
            waveform = self.waveforms[utterance]
            if speed_probability > 0 and rng.random() < speed_probability:  # no draw at 0: earlier runs unchanged
                factor = float(speed_factors[int(rng.integers(len(speed_factors)))])
                waveform = speed_changed(rng, waveform, samples, factor)
            if waveform.size >= samples:  # a random crop
                start = int(rng.integers(0, waveform.size - samples + 1))
                crop, offset = waveform[start : start + samples], 0
            else:  # a short utterance at a random place in the crop, silence around it
                crop, offset = waveform, int(rng.integers(0, samples - waveform.size + 1))
            scale = 10 ** (gains_db[k] / 20) / math.sqrt(self.levels[utterance])
            sources[k, offset : offset + crop.size] = crop * scale
        if augment is not None:
            mixture, sources = augment(rng, sources)
        else:
            mixture = sources.sum(0)
        peak = max(np.abs(mixture).max(), np.abs(sources).max())
        gain = PEAK_AFTER_SCALING / peak if peak > 0 else 1.0
        gain *= 10 ** (float(rng.uniform(*gain_db_range)) / 20)
        return (mixture * gain).astype(np.float32), (sources * gain).astype(np.float32)

    def draw_utterances(
        self, rng: np.random.Generator, n_speakers: int, max_snr_db: float = 5.0, mode: str = "min"
    ) -> tuple[np.ndarray, list[int]]:
        """A whole-utterance mixture as wsj0-2mix's test set makes it: K distinct speakers, one utterance
        each, truncated to the shortest (``min``) or padded to the longest (``max``), levels as ``draw``,
        scaled to a 0.9 peak. Returns ``(sources (K, samples) float32, utterance indices)``."""
        from deepclust.mixing.mix import mix_sources

        chosen = rng.choice(len(self.speakers), size=n_speakers, replace=False)
        utterances = []
        for speaker_index in chosen:
            indices = self.by_speaker[self.speakers[speaker_index]]
            utterances.append(indices[int(rng.integers(len(indices)))])
        gains_db = _gains_db(rng, n_speakers, max_snr_db)
        _, sources = mix_sources(
            [self.waveforms[u] for u in utterances],
            gains_db,
            self.sample_rate,
            mode,
            levels=[self.levels[u] for u in utterances],
        )
        return sources.astype(np.float32), utterances


SPEED_EDGE = 64  # samples cut from each end of a resampled stretch: the filter's zero-padded edges


def speed_changed(rng: np.random.Generator, waveform: np.ndarray, samples: int, factor: float) -> np.ndarray:
    """``waveform`` played ``factor`` times as fast (resampled by 1 / factor: pitch and tempo together): a random
    stretch of at least ``samples`` where the utterance is long enough (only that stretch is resampled), else the
    whole utterance. The active level is the utterance's, so the caller's level from the original holds."""
    from fractions import Fraction

    from scipy.signal import resample_poly  # first use only: the CLI reads the config at start-up

    ratio = Fraction(factor).limit_denominator(100)  # e.g. 1.05 -> 21/20: 20 samples out for every 21 in
    need = math.ceil((samples + 2 * SPEED_EDGE) * factor) + 1
    if waveform.size > need:
        start = int(rng.integers(0, waveform.size - need + 1))
        stretch = resample_poly(waveform[start : start + need], ratio.denominator, ratio.numerator)
        return stretch[SPEED_EDGE : SPEED_EDGE + samples].astype(np.float32)
    return resample_poly(waveform, ratio.denominator, ratio.numerator).astype(np.float32)


def mixture_batch(
    sources: np.ndarray,
    feature_config: FeatureConfig,
    feature_stats: FeatureStats | None,
    mixtures: np.ndarray | None = None,
) -> dict:
    """Training tensors of a batch of mixtures from their sources ``(batch, K, samples)``.

    ``mixtures`` ``(batch, samples)``: the mixtures, when they are not the sources' sum (augmentation:
    reverberation and noise). A bin where what no target holds (noise, late reverberation) is louder
    than every target then gets weight 0: no talker owns it, so the deep clustering loss does not ask
    the embeddings to assign it to one.

    Returns ``log_mag`` ``(batch, frames, freq)`` (normalised when ``feature_stats`` is given), ``target``
    int64 (dominant source, the IBM), ``weight`` float32 (the 40 dB silence rule, per mixture), ``mixture_mag``
    ``(batch, frames, freq)`` and ``psa_target`` ``(batch, K, frames, freq)`` (Chimera++'s truncated PSA),
    and for the waveform loss ``mixture_spectra`` (complex ``(batch, frames, freq)``), ``sources``
    ``(batch, K, samples)`` and ``stft_config``.
    """
    sources_t = torch.from_numpy(np.ascontiguousarray(sources, dtype=np.float32))
    batch, k, samples = sources_t.shape
    given = mixtures is not None
    mixtures = torch.from_numpy(np.ascontiguousarray(mixtures, dtype=np.float32)) if given else sources_t.sum(1)
    spectra = stft(
        torch.cat([mixtures.unsqueeze(1), sources_t], 1).reshape(batch * (k + 1), samples), feature_config.stft
    )
    spectra = spectra.view(batch, k + 1, *spectra.shape[1:])
    mixture_spectra, source_spectra = spectra[:, 0], spectra[:, 1:]
    magnitude, source_magnitude = mixture_spectra.abs(), source_spectra.abs()  # each once: ~20 ms a batch
    log_mag = network_input(magnitude, feature_config)
    if feature_stats is not None:
        log_mag = feature_stats.apply(log_mag)
    weight = loud_bins(magnitude, feature_config)
    if given:
        residual = (mixture_spectra - source_spectra.sum(1)).abs()
        weight &= residual <= source_magnitude.amax(1)
    weight = weight.float()
    return {
        "log_mag": log_mag.float(),
        "target": dominant_source(source_magnitude, dim=1),
        "weight": weight,
        "mixture_mag": magnitude.float(),
        "psa_target": phase_sensitive_targets(mixture_spectra, source_spectra, magnitude).float(),
        "mixture_spectra": mixture_spectra,
        "sources": sources_t,
        "stft_config": feature_config.stft,
    }


class DynamicMixing:
    """Training and validation batches for ``deepclust.training.train.fit`` (its ``batch_source``).

    Args:
        train_pool / cv_pool: source utterances of the training and validation speakers.
        feature_config: STFT and silence rule (the model stores it for separation).
        config: the mixing rules.
        seed: the validation list and the normalisation statistics derive from it.
    """

    def __init__(
        self,
        train_pool: SourcePool,
        cv_pool: SourcePool,
        feature_config: FeatureConfig,
        config: DynamicMixConfig = DynamicMixConfig(),
        seed: int = 0,
        augment: AugmentConfig = AugmentConfig(),
        feature_stats: FeatureStats | None = None,
    ):
        self.train_pool, self.cv_pool = train_pool, cv_pool
        self.feature_config, self.config, self.seed = feature_config, config, int(seed)
        self.augment_config = augment
        self.augmenter = (
            Augmenter(augment, train_pool.sample_rate, max(config.speaker_counts), seed) if augment.enabled else None
        )
        # A warm start keeps its parent's normalisation: the network was trained on those inputs.
        self.feature_stats = feature_stats if feature_stats is not None else self._estimate_stats()
        self._cv_cache: dict[tuple[int, int], list[dict]] = {}

    def _hop(self) -> int:
        return self.feature_config.stft.hop

    def _speaker_count(self, rng: np.random.Generator) -> int:
        counts = self.config.speaker_counts
        weights = np.asarray(self.config.speaker_count_weights or [1.0] * len(counts), dtype=np.float64)
        return int(counts[int(rng.choice(len(counts), p=weights / weights.sum()))])

    def _draw_batch(
        self,
        pool: SourcePool,
        rng: np.random.Generator,
        batch_size: int,
        samples: int,
        n_speakers: int,
        training: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(mixtures (batch, samples), sources (batch, K, samples))``. ``training``: draw by the config's
        same-source and speed settings (the validation list and the normalisation statistics do not)."""
        config = self.config
        drawn = [
            pool.draw(
                rng,
                n_speakers,
                samples,
                config.max_snr_db,
                config.gain_db_range,
                self.augmenter,
                config.same_source_probability if training else 0.0,
                config.speed_probability if training else 0.0,
                config.speed_factors,
            )
            for _ in range(batch_size)
        ]
        return np.stack([d[0] for d in drawn]), np.stack([d[1] for d in drawn])

    def _batch(self, drawn: tuple[np.ndarray, np.ndarray], feature_stats) -> dict:
        mixtures, sources = drawn
        # Unaugmented mixtures are their sources' sum: computed as before, bit for bit.
        return mixture_batch(
            sources, self.feature_config, feature_stats, mixtures if self.augmenter is not None else None
        )

    def _estimate_stats(self) -> FeatureStats:
        """Per-bin mean/std of log magnitudes over ``stats_mixtures`` seeded training mixtures."""
        rng = np.random.default_rng([self.seed, 7_000_001])
        running = RunningStats()
        samples = int(round(self.config.cv_seconds * self.train_pool.sample_rate))
        for _ in range(math.ceil(self.config.stats_mixtures / 32)):
            n = self._speaker_count(rng)
            batch = self._batch(self._draw_batch(self.train_pool, rng, 32, samples, n), None)
            running.update(batch["log_mag"].flatten(0, 1).numpy())
        return running.result()

    def training_batches(
        self, seed_sequence: list[int], chunk_frames: int, batch_size: int, steps: int
    ) -> Iterator[dict]:
        """``steps`` batches of fresh mixtures of ``chunk_frames`` frames; batch i depends on
        ``(*seed_sequence, i)`` only."""
        samples = (chunk_frames - 1) * self._hop()  # gives exactly chunk_frames centred frames
        for step in range(steps):
            rng = np.random.default_rng([*seed_sequence, step])
            n = self._speaker_count(rng)
            drawn = self._draw_batch(self.train_pool, rng, batch_size, samples, n, training=True)
            yield self._batch(drawn, self.feature_stats)

    def validation_batches(self, chunk_frames: int, batch_size: int) -> list[dict]:
        """The fixed validation list (cv speakers, seeded), cut to ``chunk_frames`` frames, in batches.

        Each speaker count of ``speaker_counts`` gets an equal share of the list."""
        key = (chunk_frames, batch_size)
        if key not in self._cv_cache:
            rng = np.random.default_rng([self.seed, 7_000_002])
            samples = (chunk_frames - 1) * self._hop()
            counts = self.config.speaker_counts
            batches = []
            for n in counts:
                share = max(1, self.config.cv_mixtures // len(counts))
                n = min(n, len(self.cv_pool.speakers))
                for start in range(0, share, batch_size):
                    size = min(batch_size, share - start)
                    batches.append(
                        self._batch(self._draw_batch(self.cv_pool, rng, size, samples, n), self.feature_stats)
                    )
            self._cv_cache = {key: batches}  # one chunk length at a time
        return self._cv_cache[key]


def split_cv_speakers(speakers, cv_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """``(train, cv)`` speaker lists: a seeded ``cv_fraction`` of each source (the part of the speaker id
    before ``/``; ids without one form one source), at least one per source with more than two speakers
    and at least two in all (a cv mixture needs two); with fewer speakers, cv = train."""
    by_source: dict[str, list[str]] = {}
    for speaker in sorted(set(map(str, speakers))):
        by_source.setdefault(speaker.split("/", 1)[0] if "/" in speaker else "", []).append(speaker)
    train, cv = [], []
    for index, (source, members) in enumerate(sorted(by_source.items())):
        n_cv = int(round(cv_fraction * len(members)))
        if len(members) > 2:
            n_cv = max(1, n_cv)
        n_cv = min(n_cv, len(members) - 2) if len(members) > 2 else 0
        order = np.random.default_rng([seed, index, 7_000_003]).permutation(len(members))
        chosen = {members[i] for i in order[:n_cv]}
        cv += [m for m in members if m in chosen]
        train += [m for m in members if m not in chosen]
    if len(cv) == 1 and len(train) > 3:  # a mixture needs two cv speakers: move one more over
        moved = train[int(np.random.default_rng([seed, 7_000_004]).integers(len(train)))]
        train.remove(moved)
        cv.append(moved)
    if len(cv) < 2:  # tiny corpora: validate on training speakers rather than not at all
        cv = list(train)
    return train, cv
