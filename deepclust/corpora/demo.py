"""An offline, reproducible multi-speaker demo corpus synthesised with eSpeak NG.

32 voices = 8 English accents x 4 voice variants (2 male, 2 female), each with its own pitch, pitch
range and speaking rate. Each voice reads ``utterances_per_voice`` random 5-10 word sentences drawn
from ``data/words.txt`` with a fixed seed; audio is trimmed of leading/trailing silence, resampled to
8 kHz and written as ``<root>/<speaker>/<utterance_id>.wav``, with the corpus manifest in
``<root>/manifest.parquet``. A marker ``<root>/_COMPLETE`` (written last) records the build
parameters: a rerun with the same parameters reuses the files; a half-made corpus is rebuilt.

Six voices (3 male, 3 female, six accents) form the "test" subset and are never used for training.
The same seed gives byte-identical audio (see ``espeak.EspeakEngine`` for why that needs care).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from deepclust import storage
from deepclust.audio import resample, write_audio
from deepclust.corpora.espeak import EspeakEngine
from deepclust.corpora.manifest import build_manifest, conform_manifest, validate_manifest
from deepclust.storage.manifests import MANIFEST_NAME

# Bump when anything that changes the audio changes, so cached corpora are rebuilt.
DEMO_VERSION = 1
MARKER = "_COMPLETE"
MANIFEST = MANIFEST_NAME

# (label used in speaker ids, eSpeak NG language name)
ACCENTS = (
    ("en-us", "en-us"),
    ("en-gb", "en"),
    ("en-gb-scotland", "en-gb-scotland"),
    ("en-gb-x-rp", "en-gb-x-rp"),
    ("en-029", "en-029"),
    ("en-us-nyc", "en-us-nyc"),
    ("en-gb-x-gbclan", "en-gb-x-gbclan"),
    ("en-gb-x-gbcwmd", "en-gb-x-gbcwmd"),
)
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
# Offsets from the variant's own pitch (eSpeak's 0-100 scale, 50 = unchanged): spreads speakers apart.
PITCH_OFFSETS = (-10, -4, 4, 10)
RATES_WPM = (150, 160, 170, 180)
N_TEST_ACCENTS = 6


@dataclass(frozen=True)
class DemoVoice:
    """One demo speaker: its eSpeak NG voice, and the pitch, pitch range and rate it speaks with."""

    speaker: str  # e.g. "en-gb-scotland_f3"
    espeak_name: str  # e.g. "en-gb-scotland+f3"
    gender: str  # "m" | "f"
    pitch: int  # eSpeak pitch 0-100
    pitch_range: int  # eSpeak pitch range 0-100
    rate: int  # words per minute


def demo_voices() -> list[DemoVoice]:
    """The fixed voice table: per accent, two male and two female variants, rotated across accents."""
    voices = []
    for a, (label, language) in enumerate(ACCENTS):
        variants = [
            MALE_VARIANTS[(2 * a) % 7],
            MALE_VARIANTS[(2 * a + 1) % 7],
            FEMALE_VARIANTS[(2 * a) % 5],
            FEMALE_VARIANTS[(2 * a + 1) % 5],
        ]
        for v, variant in enumerate(variants):
            k = a + v  # rotate offsets so one accent does not hold all high or all fast voices
            voices.append(
                DemoVoice(
                    speaker=f"{label}_{variant}",
                    espeak_name=f"{language}+{variant}",
                    gender=variant[0],
                    pitch=50 + PITCH_OFFSETS[k % 4],
                    pitch_range=50 + 10 * ((k % 3) - 1),
                    rate=RATES_WPM[(k + 1) % 4],
                )
            )
    return voices


def test_speakers() -> list[str]:
    """Held-out voices: the first male of accents 0, 2, 4 and the first female of accents 1, 3, 5."""
    voices = demo_voices()
    chosen = []
    for a in range(N_TEST_ACCENTS):
        gender = "m" if a % 2 == 0 else "f"
        chosen.append(next(v.speaker for v in voices[4 * a : 4 * a + 4] if v.gender == gender))
    return chosen


def load_words() -> list[str]:
    """The embedded word list (~330 common English words)."""
    text = resources.files("deepclust.corpora").joinpath("data", "words.txt").read_text(encoding="utf-8")
    return [w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")]


def trim_silence(x: np.ndarray, sr: int, threshold_db: float = -40.0, margin_s: float = 0.05) -> np.ndarray:
    """Cut leading/trailing samples quieter than ``threshold_db`` below the peak, keeping a margin."""
    loud = np.flatnonzero(np.abs(x) > np.abs(x).max() * 10 ** (threshold_db / 20))
    if len(loud) == 0:
        return x
    margin = int(margin_s * sr)
    return x[max(loud[0] - margin, 0) : loud[-1] + margin + 1]


def _speak(engine: EspeakEngine, voice: DemoVoice, text: str, seed: int, sample_rate: int) -> np.ndarray:
    """float32 ``(samples,)`` at ``sample_rate``: synthesised, trimmed, resampled, peak 0.7."""
    raw = engine.synthesise(
        text, voice.espeak_name, rate=voice.rate, pitch=voice.pitch, pitch_range=voice.pitch_range, seed=seed
    )
    x = trim_silence(raw.astype(np.float32) / 32768.0, engine.sample_rate)
    x = resample(x, engine.sample_rate, sample_rate)
    return (0.7 / max(float(np.abs(x).max()), 1e-6)) * x  # same peak for every voice; leaves headroom


def _voice_utterances(
    voice: DemoVoice, index: int, words: list[str], n: int, seed: int, sample_rate: int, min_s: float, max_s: float
):
    """Yield ``(utterance_id, text, audio)`` for one voice.

    A sentence whose audio falls outside [min_s, max_s] is redrawn (up to 8 draws; the last is kept).
    """
    rng = np.random.default_rng([seed, index])
    # A fresh engine per voice: this voice's audio depends only on its own texts (see espeak.py).
    with EspeakEngine() as engine:
        for i in range(n):
            for attempt in range(8):
                text = " ".join(rng.choice(words, size=int(rng.integers(5, 11))))
                audio = _speak(engine, voice, text, seed=int(rng.integers(2**31)), sample_rate=sample_rate)
                if min_s <= len(audio) / sample_rate <= max_s:
                    break
            yield f"{voice.speaker}_{i:03d}", text, audio


def _build_config(seed, utterances_per_voice, sample_rate, min_seconds, max_seconds) -> dict:
    return dict(
        version=DEMO_VERSION,
        seed=int(seed),
        utterances_per_voice=int(utterances_per_voice),
        sample_rate=int(sample_rate),
        min_seconds=float(min_seconds),
        max_seconds=float(max_seconds),
    )


def _reuse(root: str, config: dict) -> pd.DataFrame | None:
    """The finished corpus at ``root`` if its marker records ``config``, else None."""
    marker = storage.join(root, MARKER)
    if not storage.exists(marker) or storage.read_json(marker) != config:
        return None
    manifest = conform_manifest(storage.read_parquet(storage.join(root, MANIFEST)))
    # Paths follow the folder, so a moved or copied corpus stays usable.
    manifest["path"] = [
        storage.join(root, s, u + ".wav") for s, u in zip(manifest["speaker"], manifest["utterance_id"])
    ]
    validate_manifest(manifest)
    return manifest


def prepare_demo(
    root,
    seed: int = 0,
    utterances_per_voice: int = 40,
    sample_rate: int = 8000,
    min_seconds: float = 2.0,
    max_seconds: float = 4.0,
) -> pd.DataFrame:
    """Synthesise (first call) or reuse (later calls) the eSpeak NG demo corpus under ``root``.

    Returns the corpus manifest plus ``text`` (the sentence) and ``sha256`` (of the WAV file) columns:
    32 speakers, 2-4 s utterances, subset "train"/"test" by speaker.
    """
    root = storage.absolute(str(root))
    config = _build_config(seed, utterances_per_voice, sample_rate, min_seconds, max_seconds)
    reused = _reuse(root, config)
    if reused is not None:
        return reused
    marker = storage.join(root, MARKER)
    if storage.exists(marker):
        storage.remove(marker)  # built with other parameters: invalid until the rebuild finishes
    storage.makedirs(root)
    words, held_out, rows = load_words(), set(test_speakers()), []
    for index, voice in enumerate(demo_voices()):
        for utterance_id, text, audio in _voice_utterances(
            voice, index, words, utterances_per_voice, seed, sample_rate, min_seconds, max_seconds
        ):
            path = storage.join(root, voice.speaker, utterance_id + ".wav")
            write_audio(path, audio, sample_rate)
            rows.append(
                dict(
                    utterance_id=utterance_id,
                    path=path,
                    speaker=voice.speaker,
                    gender=voice.gender,
                    duration=len(audio) / sample_rate,
                    sample_rate=sample_rate,
                    text=text,
                    subset="test" if voice.speaker in held_out else "train",
                    sha256=storage.sha256_of(path),
                )
            )
    manifest = build_manifest(rows, extra_columns=("text", "sha256"))
    storage.write_parquet(manifest, storage.join(root, MANIFEST))
    storage.write_json(config, marker)  # last: its presence means the corpus is complete
    return manifest
