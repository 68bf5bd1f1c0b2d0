"""Features for deep clustering: STFT, log-magnitude inputs, ideal-binary-mask targets, shards."""

from deepclust.features.extract import (
    FeatureConfig,
    compute_features,
    extract_features,
    extract_shard,
    log_magnitude,
    plan_shards,
    write_feature_index,
)
from deepclust.features.normalisation import FeatureStats, RunningStats
from deepclust.features.shards import iter_features, iter_shard, write_shard
from deepclust.features.stft import StftConfig, istft, istft_np, stft, stft_np

__all__ = [
    "StftConfig",
    "stft",
    "istft",
    "stft_np",
    "istft_np",
    "FeatureConfig",
    "log_magnitude",
    "compute_features",
    "extract_features",
    "extract_shard",
    "plan_shards",
    "write_feature_index",
    "FeatureStats",
    "RunningStats",
    "write_shard",
    "iter_shard",
    "iter_features",
]
