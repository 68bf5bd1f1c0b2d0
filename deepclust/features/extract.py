"""Training features for deep clustering: log magnitudes, ideal-binary-mask targets, silence weights.

Hershey et al., ICASSP 2016:
- input (Sec. 4.1): log spectral magnitude of the mixture STFT (32 ms sqrt-Hann window, 8 ms hop);
- target (Sec. 2, the affinity `Y Y^T`): each time-frequency bin belongs to the source that dominates
  it, i.e. the ideal binary mask as a class index `argmax_k |S_k(t, f)|`;
- weights (Sec. 4.1): bins more than 40 dB below the utterance's maximum mixture magnitude are
  silence and are left out of the training objective.

`extract_features` turns a mixture manifest into shards of these features plus the training-set
statistics used to normalise the network input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from deepclust import storage
from deepclust.audio import read_audio
from deepclust.faults.errors import BadAudioError
from deepclust.faults.transient import is_transient
from deepclust.features.normalisation import RunningStats
from deepclust.features.shards import shard_extension, write_shard
from deepclust.features.stft import StftConfig, stft
from deepclust.pipeline.plan import JsonableConfig
from deepclust.storage.manifests import MANIFEST_NAME, SCHEMAS, validate

__all__ = [
    "FeatureConfig",
    "network_input",
    "loud_bins",
    "log_magnitude",
    "compute_features",
    "plan_shards",
    "extract_shard",
    "write_feature_index",
    "extract_features",
    "TRAIN_SPLIT",
]

log = logging.getLogger(__name__)

TRAIN_SPLIT = "tr"
MANIFEST_COLUMNS = SCHEMAS["features"].required  # the feature manifest's columns (deepclust.storage.manifests)


@dataclass(frozen=True)
class FeatureConfig(JsonableConfig):
    """Feature-extraction parameters; the defaults are the paper's recipe.

    Attributes:
        stft: STFT parameters (32 ms / 8 ms at 8 kHz).
        silence_db: bins more than this many dB below the utterance's loudest mixture bin get weight 0.
        log_floor: added to the magnitude before the log, so silent bins stay finite.
        shard_format: "parquet" or "npz".
        utterances_per_shard: utterances in one shard file (the unit of parallel work).
    """

    stft: StftConfig = field(default_factory=StftConfig)
    silence_db: float = 40.0
    log_floor: float = 1e-8
    shard_format: str = "parquet"
    utterances_per_shard: int = 200


def _as_tensor(x) -> torch.Tensor:
    if torch.is_tensor(x):
        return x if x.is_floating_point() else x.float()
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def network_input(magnitude: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """The network's input from mixture STFT magnitudes: ``log(|X| + log_floor)`` as float32 (before the
    training statistics normalise it). The one definition: features, dynamic mixing and separation call it."""
    return torch.log(magnitude + config.log_floor).float()


def dominant_source(magnitudes: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The ideal binary mask as a class index: ``argmax`` of the sources' magnitudes over ``dim``, ties to
    the lowest index, int64. Equal to ``magnitudes.argmax(dim)``; torch's argmax over a short outer dimension
    took 0.27 s for one 16 x 2 x 400 x 129 training batch, about 10x comparing the K slices in turn."""
    slices = magnitudes.unbind(dim)
    best, index = slices[0], torch.zeros(slices[0].shape, dtype=torch.int64, device=magnitudes.device)
    for k, candidate in enumerate(slices[1:], start=1):
        louder = candidate > best  # strictly: a tie keeps the lower index, as argmax does
        index = torch.where(louder, k, index)
        best = torch.where(louder, candidate, best)
    return index


def loud_bins(magnitude: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """The silence rule (Hershey et al. 2016, Sec. 4.1): True where ``20 log10 |X|`` is within ``silence_db``
    of the item's loudest bin. ``magnitude``: ``(frames, freq)`` or ``(batch, frames, freq)``, one peak per
    item; an all-zero item has no loud bin. The bins outside it get no training weight and no cluster."""
    # |X| >= peak * 10^(-silence_db / 20)  <=>  20 log10 |X| >= max dB - silence_db
    peak = magnitude.flatten(-2).amax(-1)[..., None, None]
    return (magnitude >= peak * 10.0 ** (-config.silence_db / 20.0)) & (peak > 0)


def log_magnitude(mixture, config: FeatureConfig = FeatureConfig()):
    """Network input: `log(|STFT(mixture)| + log_floor)`.

    Args:
        mixture: waveform `(samples,)` or `(batch, samples)`, numpy or torch (any device).

    Returns:
        `(frames, freq)` or `(batch, frames, freq)` float32, numpy for numpy input, else a tensor on
        the input's device.
    """
    is_tensor = torch.is_tensor(mixture)
    log_mag = network_input(stft(_as_tensor(mixture), config.stft).abs(), config)
    return log_mag if is_tensor else log_mag.numpy()


def compute_features(mixture, sources, config: FeatureConfig = FeatureConfig()) -> dict:
    """Features and training targets of one mixture.

    Args:
        mixture: `(samples,)` waveform.
        sources: `(K, samples)` source waveforms as they appear in the mixture (K <= 255).

    Returns:
        dict with, all `(frames, freq)` numpy arrays:
        - `log_mag` float32: `log(|X| + log_floor)` of the mixture STFT X;
        - `target` uint8: index of the dominant source, `argmax_k |S_k|` (the ideal binary mask);
        - `weight` float32 in {0, 1}: 1 where `20 log10 |X|` is within `silence_db` of its maximum
          over the utterance (Hershey et al. 2016, Sec. 4.1), else 0.
    """
    mixture = np.asarray(mixture, dtype=np.float32)
    sources = np.asarray(sources, dtype=np.float32)
    if mixture.ndim != 1:
        raise ValueError(f"mixture must be (samples,), got shape {mixture.shape}")
    if sources.ndim != 2 or sources.shape[1] != mixture.shape[0]:
        raise ValueError(f"sources must be (K, {mixture.shape[0]}), got shape {sources.shape}")
    if not 1 <= sources.shape[0] <= 255:
        raise ValueError(f"need 1..255 sources for a uint8 target, got {sources.shape[0]}")

    # One batched transform for the mixture and all sources.
    spectra = stft(torch.from_numpy(np.concatenate([mixture[None], sources])), config.stft)
    magnitude = spectra.abs()  # (1 + K, frames, freq)
    mixture_mag, source_mags = magnitude[0], magnitude[1:]

    return {
        "log_mag": network_input(mixture_mag, config).numpy(),
        "target": dominant_source(source_mags).to(torch.uint8).numpy(),
        "weight": loud_bins(mixture_mag, config).float().numpy(),  # an all-zero mixture: nothing to learn
    }


def _read_mixture(row, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    mixture, _ = read_audio(row["mixture_path"], target_sr=sample_rate)
    sources = []
    for path in list(row["source_paths"]):
        source, _ = read_audio(path, target_sr=sample_rate)
        if source.shape[0] != mixture.shape[0]:
            raise BadAudioError(
                path,
                f"source has {source.shape[0]} samples but mixture {row['mixture_path']} has {mixture.shape[0]}",
            )
        sources.append(source)
    if not sources:
        raise BadAudioError(row["mixture_path"], "mixture lists no source files")
    return mixture, np.stack(sources)


def _manifest_row(row, split: str, shard_url, num_frames: int, status: str, error: str) -> dict:
    num_speakers = row.get("num_speakers") if hasattr(row, "get") else None
    if num_speakers is None or (isinstance(num_speakers, float) and np.isnan(num_speakers)):
        num_speakers = len(list(row["source_paths"]))
    return {
        "mixture_id": str(row["mixture_id"]),
        "split": split,
        "shard_url": shard_url,
        "num_frames": int(num_frames),
        "num_speakers": int(num_speakers),
        "status": status,
        "error": error,
    }


def extract_shard(
    rows: pd.DataFrame | list[dict],
    shard_url: str,
    config: FeatureConfig = FeatureConfig(),
    stats: RunningStats | None = None,
) -> list[dict]:
    """Compute the features of some mixtures and write them as one shard (atomically).

    This is the unit of work the pipeline runs per shard. A mixture whose audio is bad
    (`BadAudioError`) is recorded with `status="failed"` and its error, and left out of the shard;
    the others go on.

    Args:
        rows: mixture-manifest rows (`mixture_id, split, mixture_path, source_paths, num_speakers`).
        shard_url: where to write; suffix matching `config.shard_format`.
        config: feature parameters.
        stats: if given, every written utterance's `log_mag` is added to it (for training statistics).

    Returns:
        one feature-manifest row per input row: `mixture_id, split, shard_url, num_frames,
        num_speakers, status ("done"/"failed"), error, shard_sha256` (failed rows have no shard).
    """
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    items, manifest_rows = [], []
    for row in records:
        split = str(row.get("split", ""))
        try:
            mixture, sources = _read_mixture(row, config.stft.sample_rate)
        except BadAudioError as error:
            if is_transient(error):
                raise  # a read that timed out is not a bad mixture: fail the unit (retried), never the row
            log.warning("skipping mixture %s: %s", row["mixture_id"], error)
            manifest_rows.append(_manifest_row(row, split, None, 0, "failed", str(error)))
            continue
        features = compute_features(mixture, sources, config)
        items.append({"mixture_id": str(row["mixture_id"]), **features})
        if stats is not None:
            stats.update(features["log_mag"])
        manifest_rows.append(_manifest_row(row, split, shard_url, features["log_mag"].shape[0], "done", ""))
    shard = write_shard(items, shard_url, config.shard_format)
    for manifest_row in manifest_rows:
        manifest_row["shard_sha256"] = shard["sha256"] if manifest_row["status"] == "done" else None
    return manifest_rows


def plan_shards(
    mixture_manifest: pd.DataFrame,
    out_url: str,
    config: FeatureConfig = FeatureConfig(),
    splits=None,
) -> list[tuple[str, str, pd.DataFrame]]:
    """Group a mixture manifest into shards: `[(split, shard_url, rows), ...]`, the one shard plan (the features
    stage's units are these shards too).

    Only mixtures made without error (`status == "done"`) are kept; each split, in manifest order (the mixtures
    stage writes its splits sorted), is cut in manifest order into `{out}/shards/{split}-{index:05d}.{parquet|npz}`
    of up to `utterances_per_shard` rows.
    """
    manifest = validate(mixture_manifest, "mixtures", "the mixture manifest given to plan_shards")
    manifest = manifest[manifest["status"] == "done"]
    if splits is not None:
        splits = [splits] if isinstance(splits, str) else list(splits)
        manifest = manifest[manifest["split"].isin(splits)]
    size = max(1, int(config.utterances_per_shard))
    extension = shard_extension(config.shard_format)
    plan = []
    for split in dict.fromkeys(manifest["split"].tolist()):
        split_rows = manifest[manifest["split"] == split].reset_index(drop=True)
        for index, start in enumerate(range(0, len(split_rows), size)):
            shard_url = storage.join(out_url, "shards", f"{split}-{index:05d}{extension}")
            plan.append((str(split), shard_url, split_rows.iloc[start : start + size]))
    return plan


def write_feature_index(
    manifest_rows: list[dict], out_url: str, config: FeatureConfig, stats: RunningStats | None
) -> pd.DataFrame:
    """Write `{out}/manifest.parquet`, `{out}/shards.parquet` and (given training stats) `{out}/stats.json`.

    `stats.json` holds `FeatureStats.to_dict()` plus `num_frames` and the feature config. Without
    training-split rows there are no statistics and no `stats.json` (a test-only extraction
    normalises with the statistics saved in the model checkpoint).
    """
    manifest = pd.DataFrame(manifest_rows, columns=MANIFEST_COLUMNS)
    manifest["num_frames"] = manifest["num_frames"].astype("int64")
    manifest["num_speakers"] = manifest["num_speakers"].astype("int64")
    validate(manifest, "features", storage.join(out_url, MANIFEST_NAME))
    ok = manifest[manifest["status"] == "done"]
    shards = (
        ok.groupby("shard_url", sort=False)
        .agg(
            split=("split", "first"),
            num_utterances=("mixture_id", "size"),
            sha256=("shard_sha256", "first"),
        )
        .reset_index()
    )
    shards = shards[["shard_url", "split", "num_utterances", "sha256"]]
    storage.write_parquet(shards, storage.join(out_url, "shards.parquet"))
    if stats is not None and stats.count > 0:
        storage.write_json(
            {**stats.result().to_dict(), "num_frames": int(stats.count), "feature_config": config.to_dict()},
            storage.join(out_url, "stats.json"),
        )
    else:
        log.warning("no %r utterances were extracted: %s/stats.json not written", TRAIN_SPLIT, out_url)
    # Written last: the manifest's presence means the extraction is complete.
    storage.write_parquet(manifest, storage.join(out_url, MANIFEST_NAME))
    return manifest


# The same parameters as plan_shards on purpose: extract_features hands them on to it (the one shard plan) unchanged.
def extract_features(
    mixture_manifest: pd.DataFrame,
    out_url: str,
    config: FeatureConfig = FeatureConfig(),
    splits=None,
) -> pd.DataFrame:
    """Extract features of every mixture into shards, plus training-set normalisation statistics.

    Writes `{out}/shards/{split}-{index:05d}.{parquet|npz}`, `{out}/stats.json` (from split "tr"
    only), `{out}/shards.parquet` (shard_url, split, num_utterances, sha256) and `{out}/manifest.parquet`.

    Args:
        mixture_manifest: a mixture manifest (`deepclust.storage.manifests.SCHEMAS["mixtures"]`); rows whose
            mixing failed are skipped.
        out_url: output folder/prefix.
        config: feature parameters.
        splits: only these splits (a name or a list); all by default.

    Returns:
        the feature manifest: `mixture_id, split, shard_url, num_frames, num_speakers, status, error,
        shard_sha256`; mixtures with bad audio have `status == "failed"` and no shard.
    """
    storage.makedirs(storage.join(out_url, "shards"))
    train_stats = RunningStats(config.stft.n_freq)
    manifest_rows: list[dict] = []
    for split, shard_url, rows in plan_shards(mixture_manifest, out_url, config, splits):
        stats = train_stats if split == TRAIN_SPLIT else None
        manifest_rows.extend(extract_shard(rows, shard_url, config, stats))
    return write_feature_index(manifest_rows, out_url, config, train_stats)
