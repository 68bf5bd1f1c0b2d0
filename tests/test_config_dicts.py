"""One dict form for every config (``deepclust.pipeline.plan.JsonableConfig``): it reads back what it writes, ignores
keys it does not know, gives missing ones their defaults, and writes exactly what the hand-written pairs it replaced
wrote (model files store it, and a changed form would make saved files compare unequal)."""

from __future__ import annotations

import json

import pytest

from deepclust import pretrained
from deepclust.archive.config import ArchiveJobConfig
from deepclust.features.extract import FeatureConfig
from deepclust.features.stft import StftConfig
from deepclust.model.blstm import ModelConfig
from deepclust.model.checkpoint import read_payload
from deepclust.separation.windows import WindowConfig
from deepclust.training.augment import AugmentConfig
from deepclust.training.config import TrainConfig
from deepclust.training.dynamic_mixing import DynamicMixConfig

# json.dumps(config.to_dict()) as the hand-written to_dict methods wrote it, before they were replaced.
WRITTEN_BEFORE = [
    (
        ModelConfig(),
        '{"n_freq": 129, "hidden": 300, "layers": 2, "emb_dim": 20, "dropout": 0.0, "mask_heads": 0, '
        '"front_end": "none", "residual_layers": 0}',
    ),
    (
        ModelConfig.preset("chimera++-conv2"),
        '{"n_freq": 129, "hidden": 400, "layers": 2, "emb_dim": 20, "dropout": 0.0, "mask_heads": 2, '
        '"front_end": "conv2", "residual_layers": 0}',
    ),
    (
        TrainConfig(lr_halving_epochs=(3, 5), curriculum_chunk_frames=400, device="cpu"),
        '{"chunk_frames": 100, "curriculum_chunk_frames": 400, "batch_size": 32, "learning_rate": 0.001, '
        '"grad_clip": 5.0, "max_epochs": 100, "steps_per_epoch": null, "patience": 5, "min_delta": 0.0, "seed": 0, '
        '"device": "cpu", "amp": true, "precision": "auto", "num_threads": null, "max_train_seconds": null, '
        '"shuffle_buffer": 1024, "dc_loss": "classic", "mask_loss_weight": 0.5, "waveform_loss_weight": 0.0, '
        '"lr_halving_patience": null, "lr_halving_epochs": [3, 5], "snapshot_every": null, "prefetch_batches": 0, '
        '"compile": "auto"}',
    ),
    (
        DynamicMixConfig(speaker_counts=(2, 3), speaker_count_weights=(0.5, 0.5)),
        '{"speaker_counts": [2, 3], "speaker_count_weights": [0.5, 0.5], "max_snr_db": 5.0, '
        '"gain_db_range": [-25.0, 0.0], "cv_fraction": 0.05, "cv_mixtures": 256, "cv_seconds": 3.2, '
        '"stats_mixtures": 512, "same_source_probability": 0.0, "speed_probability": 0.0, '
        '"speed_factors": [0.9, 0.95, 1.05, 1.1]}',
    ),
    (
        AugmentConfig.recipe("/n"),
        '{"room_probability": 0.25, "rt60_range": [0.1, 0.8], "early_ms": 50.0, "rooms": 300, '
        '"noise_probability": 0.35, "snr_db_range": [0.0, 25.0], "noise_root": "/n", "coloured_noise_share": 0.3, '
        '"channel_probability": 0.25, "eq_db": 6.0, "telephone_share": 0.4}',
    ),
    (
        FeatureConfig(stft=StftConfig(16000, 32.0, 8.0), shard_format="npz"),
        '{"stft": {"sample_rate": 16000, "win_ms": 32.0, "hop_ms": 8.0}, "silence_db": 40.0, "log_floor": 1e-08, '
        '"shard_format": "npz", "utterances_per_shard": 200}',
    ),
    (StftConfig(), '{"sample_rate": 8000, "win_ms": 32.0, "hop_ms": 8.0}'),
    (
        WindowConfig(20.0, 4.0, 3, 0.1),
        '{"window_seconds": 20.0, "overlap_seconds": 4.0, "windows_per_batch": 3, "context_seconds": 0.1}',
    ),
]
CONFIGS = [config for config, _ in WRITTEN_BEFORE] + [
    ArchiveJobConfig(n_speakers=3, splits=("tr", "tt"), channel=2, window=WindowConfig(20.0, 4.0, 3)),
    ArchiveJobConfig(splits=None),
]


def name(config) -> str:
    return type(config).__name__


@pytest.mark.parametrize("config, written", WRITTEN_BEFORE, ids=[name(c) for c, _ in WRITTEN_BEFORE])
def test_the_dict_form_is_byte_for_byte_what_was_written_before(config, written):
    assert json.dumps(config.to_dict()) == written


@pytest.mark.parametrize("config", CONFIGS, ids=name)
def test_a_config_reads_back_from_json_equal_with_its_tuples_and_nested_configs(config):
    again = type(config).from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and json.dumps(again.to_dict()) == json.dumps(config.to_dict())


@pytest.mark.parametrize("config", CONFIGS, ids=name)
def test_unknown_keys_are_ignored_and_missing_ones_take_their_defaults(config):
    data = json.loads(json.dumps(config.to_dict()))
    dropped = list(data)[-1]
    del data[dropped]
    data["written_by_a_later_release"] = 1
    again = type(config).from_dict(data)
    assert getattr(again, dropped) == getattr(type(config)(), dropped)


def test_the_shipped_model_files_configs_read_back_with_every_stored_value():
    """The shipped file predates ``residual_layers``: what it stores reads back as stored, the rest as defaults."""
    payload = read_payload(pretrained.path())
    for cls, stored in ((ModelConfig, payload["model_config"]), (FeatureConfig, payload["feature_config"])):
        assert cls.from_dict(stored).to_dict() == {**cls().to_dict(), **stored}, cls.__name__


def test_a_hand_written_stft_number_reads_as_its_fields_type():
    """``win_ms: 32`` in a YAML gives the same dict (and stage key) as ``win_ms: 32.0``."""
    spelt = StftConfig.from_dict({"sample_rate": 8000.0, "win_ms": 32, "hop_ms": 8})
    assert json.dumps(spelt.to_dict()) == json.dumps(StftConfig().to_dict())
