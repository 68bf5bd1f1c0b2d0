"""Training from a feature folder (``manifest.parquet``, ``stats.json``, shards): the recipe's training stage.

``deepclust.training.train.fit`` does the training; this reads the folder into its items.
"""

from __future__ import annotations

from typing import Callable

from deepclust import storage
from deepclust.features.extract import FeatureConfig
from deepclust.features.normalisation import FeatureStats
from deepclust.features.shards import iter_features
from deepclust.model.blstm import ModelConfig
from deepclust.storage.manifests import MANIFEST_NAME, read_manifest
from deepclust.training.config import TrainConfig
from deepclust.training.replicas import Replicas
from deepclust.training.train import fit


def _feature_folder(feature_manifest_url: str) -> str:
    url = str(feature_manifest_url).rstrip("/")
    return url.rsplit("/", 1)[0] if url.endswith(".parquet") else url


def train(
    feature_manifest_url: str,
    out_url: str,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    resume: bool = True,
    progress: Callable[[dict], None] | None = None,
    replicas: Replicas | None = None,
) -> dict:
    """Train on the "tr" split of a feature folder, validate on "cv"; see :func:`fit` for outputs.

    ``feature_manifest_url`` is the folder's ``manifest.parquet`` (or the folder itself); its ``stats.json``
    (training-set ``FeatureStats`` and the ``FeatureConfig``) normalises the inputs; both are stored in ``model.pt``.
    With ``replicas`` (data-parallel training), each process trains on its share of the "tr" utterances.
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    replicas = replicas or Replicas()
    folder = _feature_folder(feature_manifest_url)
    manifest_url = storage.join(folder, MANIFEST_NAME)
    read_manifest(manifest_url, "features")  # another stage's manifest is named as such, not as a missing stats.json
    stats_json = storage.read_json(storage.join(folder, "stats.json"))
    feature_stats = FeatureStats.from_dict(stats_json)
    # The extractor stores its FeatureConfig.to_dict() (sample rate, STFT, silence threshold) beside the stats.
    feature_config = stats_json.get("feature_config") or FeatureConfig().to_dict()
    if feature_stats.n_freq != model_config.n_freq:
        raise ValueError(f"{folder}: features have {feature_stats.n_freq} bins, model expects {model_config.n_freq}")
    return fit(
        # Every process visits the shards in the same seeded order and keeps its share of the utterances.
        train_items=lambda seed: replicas.shard(iter_features(manifest_url, "tr", shuffle=True, seed=seed)),
        val_items=lambda: iter_features(manifest_url, "cv"),
        out_url=out_url,
        model_config=model_config,
        train_config=train_config,
        feature_stats=feature_stats,
        feature_config=feature_config,
        resume=resume,
        progress=progress,
        replicas=replicas,
    )
