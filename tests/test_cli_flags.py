"""Command-line flags are named as the config fields they set, an older spelling still parses the same, and every
default is the config's own."""

from __future__ import annotations

import pytest

from deepclust.cli import build_parser
from deepclust.features.extract import FeatureConfig
from deepclust.recipe.config import ReproduceConfig
from deepclust.separation.long import WindowConfig
from deepclust.stages.mixtures import MixStageConfig
from deepclust.training.config import TrainConfig

RENAMED = [  # (command and its required arguments, field spelling, older spelling, value)
    (["train", "--features", "f", "--out", "o"], "--max-epochs", "--epochs", "3"),
    (["train", "--features", "f", "--out", "o"], "--max-train-seconds", "--max-seconds", "60"),
    (["train", "--features", "f", "--out", "o"], "--curriculum-chunk-frames", "--curriculum-frames", "400"),
    (["train-dynamic", "--sources", "a", "--out", "o"], "--num-threads", "--threads", "2"),
    (["train-dynamic", "--sources", "a", "--out", "o"], "--speaker-counts", "--speakers", "2,3"),
    (["train-dynamic", "--out", "o", "--max-epochs", "1"], "--sources", "--source", "a"),
    (["mix", "--corpus-manifest", "c", "--out", "o"], "--n-speakers", "--speakers", "3"),
    (["mix", "--corpus-manifest", "c", "--out", "o"], "--test-speaker-counts", "--test-speakers", "2,3"),
    (["mix", "--corpus-manifest", "c", "--out", "o"], "--mix-lists", "--list", "tr=a.txt"),
    (["features", "--mixtures", "m", "--out", "o"], "--shard-format", "--format", "npz"),
    (["separate", "--input", "i", "--out", "o"], "--windows-per-batch", "--batch-size", "3"),
    (["separate", "--input", "i", "--out", "o"], "--n-speakers", "--speakers", "3"),
    (["separate-archive", "--input", "i", "--out", "o"], "--stale-minutes", "--lock-stale-minutes", "5"),
    (["reproduce"], "--max-train-seconds", "--train-seconds", "60"),
    (["demo"], "--max-workers", "--workers", "2"),
    (["reproduce"], "--history-url", "--history", "h.parquet"),
    (["reproduce"], "--regression-margin-db", "--regression-margin", "1.5"),
    (["corpus", "sources", "--out", "o"], "--sources", "--source", "a"),
]


@pytest.mark.parametrize("command, field_flag, old_flag, value", RENAMED)
def test_a_flag_spelled_as_its_field_and_its_older_spelling_parse_the_same(command, field_flag, old_flag, value):
    parser = build_parser()
    assert vars(parser.parse_args([*command, field_flag, value])) == vars(parser.parse_args([*command, old_flag, value]))


def test_defaults_are_read_from_the_configs_that_own_them():
    parser = build_parser()
    train = parser.parse_args(["train", "--features", "f", "--out", "o"])
    assert (train.max_epochs, train.device, train.seed) == (TrainConfig.max_epochs, TrainConfig.device, TrainConfig.seed)
    mix = parser.parse_args(["mix", "--corpus-manifest", "c", "--out", "o"])
    assert mix.n_speakers == MixStageConfig.n_speakers
    assert tuple(int(n) for n in mix.test_speaker_counts.split(",")) == MixStageConfig.test_speaker_counts
    assert parser.parse_args(["features", "--mixtures", "m", "--out", "o"]).shard_format == FeatureConfig.shard_format
    separate = parser.parse_args(["separate", "--input", "i", "--out", "o"])
    assert (separate.windows_per_batch, separate.window_seconds) == (WindowConfig.windows_per_batch,
                                                                     WindowConfig.window_seconds)
    assert parser.parse_args(["reproduce"]).out == ReproduceConfig.run_root
