"""Creating mixtures from a mix list, as ``create_wav_2speakers.m`` / ``create_wav_3speakers.m`` do.

Per mixture: read each source; resample to the output rate; normalise to 0 dB active level (P.56,
measured at 8 kHz as the recipe does, see ``MixConfig.level_sample_rate``); multiply by
``10**(snr/20)``; truncate to the shortest ('min') or zero-pad to the longest ('max') source; sum; then
scale mixture and sources together by ``0.9 / max(|mix|, |s_k|)`` so nothing clips; write 16-bit WAV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from deepclust import storage
from deepclust.audio import read_audio, resample, write_audio
from deepclust.faults.errors import BadAudioError
from deepclust.faults.transient import is_disk_full, is_transient
from deepclust.mixing.mixlist import MixEntry, mixture_id, utterance_stem
from deepclust.mixing.p56 import active_level
from deepclust.storage.manifests import MANIFEST_NAME, SCHEMAS, validate

PEAK_AFTER_SCALING = 0.9  # the recipe's anti-clipping target for max(|mix|, |s_k|)

MANIFEST_COLUMNS = SCHEMAS["mixtures"].required  # the mixture manifest's columns (deepclust.storage.manifests)


@dataclass(frozen=True)
class MixConfig:
    """How mixtures are made; defaults are the wsj0-2mix recipe's ``wav8k/min``.

    ``level_sample_rate``: the rate at which the active level is measured. The recipe measures it on
    the 8 kHz version and applies the same gain to the 16 kHz files, so ``wav8k`` and ``wav16k`` hold
    the same mixtures; ``None`` measures at ``sample_rate`` instead.
    """

    sample_rate: int = 8000
    mode: str = "min"
    n_speakers: int = 2
    level_sample_rate: int | None = 8000

    def __post_init__(self):
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {self.mode!r}")
        if self.n_speakers < 2:
            raise ValueError(f"n_speakers must be >= 2, got {self.n_speakers}")
        if int(self.sample_rate) <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")


def mix_sources(
    sources: list[np.ndarray], snrs_db, sample_rate: int, mode: str = "min", levels: list[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mix waveforms ``(samples_k,)`` at ``sample_rate`` as the recipe does.

    ``levels``: active levels (power) to normalise by; measured here with P.56 when not given.
    Returns ``(mixture (samples,), sources (K, samples))`` float64, scaled so the largest absolute value
    of either is 0.9; ``mixture == sources.sum(0)``. Raises ``ValueError`` for an all-zero source.
    """
    if levels is None:
        levels = [active_level(s, sample_rate)[0] for s in sources]
    scaled = []
    for index, (source, level, snr) in enumerate(zip(sources, levels, snrs_db)):
        if not level > 0.0:
            raise ValueError(f"source {index + 1} is silent (active level 0): cannot normalise it")
        scaled.append(np.asarray(source, dtype=np.float64) * (10 ** (float(snr) / 20) / math.sqrt(level)))
    lengths = [s.size for s in scaled]
    length = min(lengths) if mode == "min" else max(lengths)
    stacked = np.zeros((len(scaled), length))
    for k, s in enumerate(scaled):
        n = min(length, s.size)
        stacked[k, :n] = s[:n]
    mixture = stacked.sum(axis=0)
    peak = max(np.abs(mixture).max(initial=0.0), np.abs(stacked).max(initial=0.0))
    gain = PEAK_AFTER_SCALING / peak if peak > 0 else 1.0
    return mixture * gain, stacked * gain


def _metadata_lookup(corpus_manifest: pd.DataFrame | None) -> dict[str, dict]:
    if corpus_manifest is None or len(corpus_manifest) == 0:
        return {}
    columns = [c for c in ("utterance_id", "speaker", "gender") if c in corpus_manifest.columns]
    rows = corpus_manifest[["path", *columns]].to_dict("records")
    return {str(r["path"]): r for r in rows}


def _source_metadata(listed_path: str, real_path: str, lookup: dict[str, dict]) -> tuple[str, str, object]:
    """(utterance_id, speaker, gender) from the corpus manifest, else file stem / parent folder / None."""
    row = lookup.get(listed_path) or lookup.get(real_path)
    if row is not None:
        gender = row.get("gender")
        gender = None if gender is None or (isinstance(gender, float) and math.isnan(gender)) else str(gender)
        return str(row.get("utterance_id", utterance_stem(listed_path))), str(row.get("speaker")), gender
    parent = listed_path.replace("\\", "/").rstrip("/").rsplit("/", 2)
    speaker = parent[-2] if len(parent) >= 2 else ""
    return utterance_stem(listed_path), speaker, None


def _resolve_or_listed(resolve, listed: str) -> str:
    try:
        return str(resolve(listed))
    except (ValueError, OSError, KeyError):  # reported as the row's error when the source is read
        return listed


def _make_one(entry: MixEntry, split: str, out_url: str, config: MixConfig, resolve, lookup) -> dict:
    mix_id = mixture_id(entry)
    mixture_path = storage.join(out_url, split, "mix", f"{mix_id}.wav")
    source_paths = [storage.join(out_url, split, f"s{k + 1}", f"{mix_id}.wav") for k in range(len(entry.paths))]
    metadata = [_source_metadata(p, _resolve_or_listed(resolve, p), lookup) for p in entry.paths]
    row = {
        "mixture_id": mix_id,
        "split": split,
        "mixture_path": mixture_path,
        "source_paths": source_paths,
        "utterance_ids": [m[0] for m in metadata],
        "speakers": [m[1] for m in metadata],
        "genders": [m[2] for m in metadata],
        "snrs_db": [float(s) for s in entry.snrs_db],
        "num_speakers": len(entry.paths),
        "sample_rate": int(config.sample_rate),
        "num_samples": 0,
        "mode": config.mode,
        "status": "done",
        "error": None,
    }
    try:
        if len(entry.paths) != config.n_speakers:
            raise ValueError(f"{mix_id}: {len(entry.paths)} sources listed, config expects {config.n_speakers}")
        sources, levels = [], []
        for listed in entry.paths:
            real = str(resolve(listed))
            x, sr = read_audio(real)
            out = resample(x, sr, config.sample_rate)
            if config.level_sample_rate is None or int(config.level_sample_rate) == int(config.sample_rate):
                measured, measured_sr = out, config.sample_rate
            else:  # the recipe measures at 8 kHz, from the original rate, whatever the output rate
                measured, measured_sr = resample(x, sr, config.level_sample_rate), config.level_sample_rate
            level, _ = active_level(measured, measured_sr)
            if not level > 0.0:
                raise BadAudioError(real, "silent: active speech level is zero")
            sources.append(out)
            levels.append(level)
        mixture, scaled = mix_sources(sources, entry.snrs_db, config.sample_rate, config.mode, levels)
        write_audio(mixture_path, mixture, config.sample_rate)
        for path, source in zip(source_paths, scaled):
            write_audio(path, source, config.sample_rate)
        row["num_samples"] = int(mixture.size)
    except (BadAudioError, ValueError, OSError, KeyError) as error:  # one bad item must not stop the batch
        if is_transient(error) or is_disk_full(error):
            raise  # a timeout or a full disk is not this mixture's fault: fail the unit (retried), never the row
        row["status"] = "failed"
        row["error"] = str(error)
    return row


def create_mixtures(
    entries,
    split: str,
    out_url,
    config: MixConfig = MixConfig(),
    path_resolver: Callable[[str], str] | None = None,
    corpus_manifest: pd.DataFrame | None = None,
    write_manifest: bool = True,
) -> pd.DataFrame:
    """Write ``{out}/{split}/mix/{id}.wav`` and ``{out}/{split}/s{k}/{id}.wav`` for each ``MixEntry``.

    ``path_resolver(listed_path) -> real path`` maps list paths (e.g. ``wsj0/si_tr_s/...wv1``) to files;
    identity by default. Speakers/genders/utterance ids come from ``corpus_manifest`` (matched on
    ``path``, listed or resolved) when given, else folder name / None / file stem. Returns the mixture
    manifest (columns ``MANIFEST_COLUMNS``) and writes it to ``{out}/{split}/manifest.parquet``. A
    source that cannot be used gives a row with ``status="failed"`` and ``error``; the rest go on.
    A rerun overwrites (the pipeline layer caches whole stages). ``write_manifest=False`` leaves the
    manifest to the caller (the pipeline runs batches of one split in parallel and merges them).
    """
    out_url = str(out_url)
    resolve = path_resolver or (lambda p: p)
    lookup = _metadata_lookup(corpus_manifest)
    for folder in ["mix", *[f"s{k + 1}" for k in range(config.n_speakers)]]:
        storage.makedirs(storage.join(out_url, split, folder))
    rows = [_make_one(entry, split, out_url, config, resolve, lookup) for entry in entries]
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS).astype(
        {"num_speakers": "int64", "sample_rate": "int64", "num_samples": "int64"}
    )
    # pandas turns None into NaN next to strings; keep None ("no error") as stored in Parquet
    manifest["error"] = pd.Series([r["error"] for r in rows], index=manifest.index, dtype=object)
    url = storage.join(out_url, split, MANIFEST_NAME)
    validate(manifest, "mixtures", url)
    if write_manifest:
        storage.write_parquet(manifest, url)
    return manifest
