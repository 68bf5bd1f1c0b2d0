"""The recipe on real speech (FSDD), through the stage store: train a small BLSTM for a few hundred steps,
then separate held-out mixtures (new utterances of the training speakers) and beat the mixture.

Closed-speaker on purpose: six speakers are too few to learn speaker-independent embeddings (open-speaker
quality is judged on the demo corpus; see benchmarks/).
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from deepclust import storage
from deepclust.features.extract import FeatureConfig
from deepclust.model.blstm import ModelConfig
from deepclust.pipeline.driver import run_stage
from deepclust.pipeline.store import COMPUTE_COUNTER
from deepclust.stages.corpus import CorpusConfig, plan_corpus
from deepclust.stages.evaluate import EvaluateConfig, plan_evaluate
from deepclust.stages.features import plan_features
from deepclust.stages.mixtures import MixStageConfig, plan_mixtures
from deepclust.stages.separate import SeparateConfig, plan_separate
from deepclust.stages.train import plan_train
from deepclust.training.config import TrainConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fsdd_run(tmp_path_factory, fsdd_dir):
    root = str(tmp_path_factory.mktemp("fsdd-run"))
    corpus = run_stage(
        plan_corpus(
            root, CorpusConfig(name="folder", root=str(fsdd_dir), pattern="fsdd", test_speakers=["george", "lucas"])
        )
    )
    mixtures = run_stage(
        plan_mixtures(root, corpus, MixStageConfig(sizes={"tr": 800, "cv": 60, "tt": 20}, batch_size=400))
    )
    features = run_stage(plan_features(root, mixtures, FeatureConfig(utterances_per_shard=200)))
    model_config = ModelConfig(hidden=96, layers=2, emb_dim=16)
    train_config = TrainConfig(
        max_epochs=8,
        steps_per_epoch=40,
        batch_size=16,
        chunk_frames=50,
        patience=8,
        learning_rate=2e-3,
        seed=0,
        device="cpu",
    )
    model = run_stage(plan_train(root, features, model_config, train_config))
    # Held-out mixtures: the 'cv' split (training speakers, utterances never used for training).
    separated = run_stage(plan_separate(root, model, mixtures, SeparateConfig(splits=("cv",))))
    results = run_stage(plan_evaluate(root, separated, mixtures, EvaluateConfig(oracles=("ibm",))))
    return {
        "root": root,
        "model": model,
        "results": results,
        "mixtures": mixtures,
        "features": features,
        "train_config": train_config,
        "model_config": model_config,
    }


def test_training_lowers_the_validation_loss(fsdd_run):
    history = pd.read_csv(storage.join(storage.parent(fsdd_run["model"]), "history.csv"))
    initial = storage.read_json(storage.join(storage.parent(fsdd_run["model"]), "_COMPLETE"))["info"][
        "initial_val_loss"
    ]
    assert history["global_step"].iloc[-1] >= 300
    assert history["val_loss"].min() < 0.6 * initial
    assert history["val_loss"].min() < history["val_loss"].iloc[0]  # and keeps improving after epoch 1


def test_separating_held_out_mixtures_beats_the_mixture(fsdd_run):
    results = storage.read_parquet(fsdd_run["results"])
    model = results[(results["system"] == "model") & (results["status"] == "done")]
    ibm = results[results["system"] == "ibm"]
    assert len(model) == 60
    assert set(results["condition"]) == {"closed"}
    assert model["sdri"].mean() > 0.0, model["sdri"].describe()
    assert ibm["sdri"].mean() > model["sdri"].mean()  # the oracle stays the ceiling
    assert np.isfinite(model["si_sdri"]).all()


def test_rerun_reuses_every_stage_and_a_new_training_parameter_reuses_features(fsdd_run):
    root = fsdd_run["root"]
    before = dict(COMPUTE_COUNTER)
    again = plan_train(root, fsdd_run["features"], fsdd_run["model_config"], fsdd_run["train_config"])
    assert again.stage.is_complete() and run_stage(again) == fsdd_run["model"]
    changed = plan_train(
        root,
        fsdd_run["features"],
        fsdd_run["model_config"],
        dataclasses.replace(fsdd_run["train_config"], learning_rate=1e-3),
    )
    assert changed.stage.key != again.stage.key and not changed.stage.is_complete()
    assert COMPUTE_COUNTER == before
