"""Stage keys hold what a stage computes, never where or how fast it runs: one rule (``execution_only`` fields,
``deepclust.pipeline.plan.recipe_params``) for every stage key and for the history's recipe fingerprint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from deepclust import storage
from deepclust.pipeline.plan import execution_only_fields
from deepclust.recipe.config import demo_config
from deepclust.reports.history import config_fingerprint
from deepclust.stages.evaluate import EvaluateConfig
from deepclust.stages.separate import SeparateConfig, plan_separate
from deepclust.training.config import TrainConfig

FSDD = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "fsdd"


@pytest.fixture
def separation_inputs(tmp_path):
    """A model manifest and a mixture manifest of five real recordings (the plan reads rows, not audio; the
    manifest has every column of the mixture schema, which the plan validates)."""
    wavs = sorted(FSDD.rglob("*.wav"))[:5]
    mixtures = pd.DataFrame(
        {
            "mixture_id": [w.stem for w in wavs],
            "split": "tt",
            "mixture_path": [str(w) for w in wavs],
            "source_paths": [[str(w), str(w)] for w in wavs],
            "utterance_ids": [[w.stem, w.stem] for w in wavs],
            "speakers": [["a", "b"]] * len(wavs),
            "genders": [["m", "f"]] * len(wavs),
            "snrs_db": [[0.0, 0.0]] * len(wavs),
            "num_speakers": 2,
            "sample_rate": 8000,
            "num_samples": 8000,
            "mode": "min",
            "status": "done",
            "error": "",
            "sha256": [storage.sha256_of(str(w)) for w in wavs],
        }
    )
    mixture_url, model_url = str(tmp_path / "mixtures.parquet"), str(tmp_path / "model.parquet")
    storage.write_parquet(mixtures, mixture_url)
    storage.write_parquet(pd.DataFrame({"model_url": ["model.pt"], "sha256": ["0" * 64]}), model_url)
    return str(tmp_path / "run"), model_url, mixture_url


def _separation_key(inputs, **settings) -> str:
    run_root, model_url, mixture_url = inputs
    return plan_separate(run_root, model_url, mixture_url, SeparateConfig(**settings)).stage.key


def test_separation_key_ignores_device_batch_size_and_unit_size(separation_inputs):
    base = _separation_key(separation_inputs)
    assert _separation_key(separation_inputs, device="cuda", batch_size=64, unit_size=2) == base


def test_separation_key_changes_with_a_setting_that_changes_the_outputs(separation_inputs):
    base = _separation_key(separation_inputs)
    assert _separation_key(separation_inputs, kmeans="sklearn") != base
    assert _separation_key(separation_inputs, window_seconds=4.0) != base


def test_units_are_named_by_the_range_they_hold_so_another_unit_size_never_reuses_a_different_range(separation_inputs):
    run_root, model_url, mixture_url = separation_inputs
    by_two = plan_separate(run_root, model_url, mixture_url, SeparateConfig(unit_size=2)).units
    by_three = plan_separate(run_root, model_url, mixture_url, SeparateConfig(unit_size=3)).units
    assert [u["id"] for u in by_two] == ["items-00000-00001", "items-00002-00003", "items-00004-00004"]
    shared = {u["id"] for u in by_two} & {u["id"] for u in by_three}
    for unit_id in shared:  # equal ids hold equal items
        assert [u for u in by_two if u["id"] == unit_id] == [u for u in by_three if u["id"] == unit_id]


def test_the_history_fingerprint_follows_the_same_rule_as_the_stage_keys(tmp_path):
    base = demo_config(str(tmp_path / "a"), quick=True)
    moved = dataclasses.replace(
        base,
        run_root=str(tmp_path / "b"),
        train=dataclasses.replace(base.train, device="cuda", num_threads=4, prefetch_batches=2),
        separate=dataclasses.replace(base.separate, device="cuda", batch_size=64, unit_size=7),
        evaluate=dataclasses.replace(base.evaluate, unit_size=3),
    )
    longer = dataclasses.replace(base, train=dataclasses.replace(base.train, max_epochs=base.train.max_epochs + 1))
    assert config_fingerprint(moved) == config_fingerprint(base) != config_fingerprint(longer)


def test_execution_only_settings_are_declared_on_their_configs():
    assert execution_only_fields(SeparateConfig) == {"device", "batch_size", "unit_size"}
    assert execution_only_fields(EvaluateConfig) == {"unit_size"}
    assert execution_only_fields(TrainConfig) == {"device", "num_threads", "prefetch_batches"}
