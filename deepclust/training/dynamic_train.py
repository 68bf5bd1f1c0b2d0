"""Training on dynamically mixed source utterances of a corpus manifest (the real-speech recipe).

``train_dynamic`` takes a corpus manifest (e.g. ``prepare_sources`` over speechocean762 and LibriSpeech),
holds out a seeded share of its "train" speakers for validation, loads their audio into memory and runs
``fit`` with a ``DynamicMixing`` batch source. The model file records which speakers it was trained and
validated on, so a benchmark can prove its test speakers were never heard.
"""

from __future__ import annotations

import logging
from typing import Callable

import pandas as pd

from deepclust import storage
from deepclust.features.extract import FeatureConfig
from deepclust.model.blstm import ModelConfig
from deepclust.model.lineage import ParentModel
from deepclust.training.augment import AugmentConfig
from deepclust.training.config import TrainConfig
from deepclust.training.dynamic_mixing import DynamicMixConfig, DynamicMixing, SourcePool, split_cv_speakers
from deepclust.training.replicas import Replicas
from deepclust.training.teacher import Teacher, check_weight
from deepclust.training.train import fit

log = logging.getLogger(__name__)


# Dynamic mixing draws fresh mixtures for ever, so an "epoch" is a fixed number of steps (one validation and
# checkpoint each); 16-mixture batches are what the shipped model was trained with.
STEPS_PER_EPOCH = 200
BATCH_SIZE = 16


def train_dynamic(
    corpus_manifest: pd.DataFrame,
    out_url: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    mix_config: DynamicMixConfig = DynamicMixConfig(),
    feature_config: FeatureConfig = FeatureConfig(),
    resume: bool = True,
    progress: Callable[[dict], None] | None = None,
    provenance: dict | None = None,
    augment: AugmentConfig = AugmentConfig(),
    init_from: str | None = None,
    replicas: Replicas | None = None,
    teacher: str | None = None,
    teacher_weight: float = 0.5,
) -> dict:
    """Train on fresh mixtures of the manifest's "train" speakers; see ``fit`` for the outputs.

    Writes ``corpus.parquet`` (the manifest, with a ``role`` column: train / cv / test) beside the model.
    ``provenance``: more facts for ``model.pt`` (e.g. the command line that made it).
    ``augment``: rooms, noise and channels for the mixtures (``deepclust.training.augment``).
    ``init_from``: warm start from this model file: its weights and its input normalisation (the network
    was trained on those inputs); it must not have trained on a speaker this corpus holds out.
    ``teacher``: a model file whose embeddings and masks of each training batch are extra targets, taking
    ``teacher_weight`` of each step's loss (``deepclust.training.teacher``); like ``init_from`` it must not
    have trained on a held-out speaker, and the run reads its inputs normalised as the teacher does.
    ``replicas``: run as one of several data-parallel processes (``deepclust.training.processes``); each draws
    its own batches (the rank is part of the batch seed), and only rank 0 writes.
    """
    replicas = replicas or Replicas()
    if teacher:
        check_weight(teacher_weight)  # before any audio is read
    train_rows = corpus_manifest[corpus_manifest["subset"] == "train"]
    test_speakers = sorted(set(corpus_manifest.loc[corpus_manifest["subset"] != "train", "speaker"]))
    train_speakers, cv_speakers = split_cv_speakers(train_rows["speaker"], mix_config.cv_fraction, train_config.seed)
    roles = {
        **{s: "train" for s in train_speakers},
        **{s: "cv" for s in cv_speakers},
        **{s: "test" for s in test_speakers},
    }
    if replicas.writes:
        storage.makedirs(out_url)
        with_roles = corpus_manifest.assign(role=corpus_manifest["speaker"].map(roles))
        storage.write_parquet(with_roles, storage.join(out_url, "corpus.parquet"))

    sample_rate = feature_config.stft.sample_rate
    train_pool = SourcePool(train_rows[train_rows["speaker"].isin(train_speakers)], sample_rate)
    cv_pool = SourcePool(train_rows[train_rows["speaker"].isin(cv_speakers)], sample_rate)
    log.info(
        "dynamic mixing: %d training speakers (%.0f s), %d cv speakers (%.0f s)",
        len(train_pool.speakers),
        train_pool.seconds,
        len(cv_pool.speakers),
        cv_pool.seconds,
    )
    parent_stats, parent_model, teacher_model = None, None, None
    if init_from:
        parent_model = _read_unheard(init_from, test_speakers, feature_config)  # fit warm-starts from this object
        parent_stats = parent_model.loaded.feature_stats
    if teacher:
        teacher_model = _read_unheard(teacher, test_speakers, feature_config)
        if parent_stats is not None and not parent_stats.same_as(teacher_model.loaded.feature_stats):
            raise ValueError(
                f"{init_from} and the teacher {teacher} normalise their inputs differently: one run cannot feed both"
            )
        parent_stats = teacher_model.loaded.feature_stats
    source = DynamicMixing(
        train_pool,
        cv_pool,
        feature_config,
        mix_config,
        seed=train_config.seed,
        augment=augment,
        feature_stats=parent_stats,
    )
    extra = {
        **(provenance or {}),
        "recipe": "dynamic-mixing",
        "dynamic_mix_config": mix_config.to_dict(),
        "augmentation": augment.to_dict(),
        "sources": corpus_manifest.attrs.get("sources", []),
        "training_speakers": train_pool.speakers,
        "cv_speakers": cv_pool.speakers,
        "held_out_speakers": test_speakers,
        "training_seconds_of_audio": train_pool.seconds,
        "skipped_sources": [list(e) for e in train_pool.errors + cv_pool.errors],
        "processes": replicas.world_size,  # data-parallel: the effective batch is this times the batch size
    }
    return fit(
        [],
        [],
        out_url,
        model_config,
        train_config,
        feature_stats=source.feature_stats,
        feature_config=feature_config.to_dict(),
        resume=resume,
        progress=progress,
        batch_source=source,
        extra=extra,
        init_from=parent_model,
        replicas=replicas,
        teacher=Teacher(teacher_model, train_config, teacher_weight) if teacher_model else None,
    )


def _read_unheard(url: str, test_speakers: list[str], feature_config: FeatureConfig) -> ParentModel:
    """A model file to start from or learn from, refused if it heard a held-out speaker or has other features."""
    model = ParentModel.read(url)
    heard = set(model.loaded.extra.get("training_speakers", [])) | set(model.loaded.extra.get("cv_speakers", []))
    leaked = sorted(heard & set(test_speakers))
    if leaked:
        raise ValueError(
            f"{url} trained on {len(leaked)} speakers this corpus holds out "
            f"(e.g. {leaked[:3]}): its test figures would not be on unheard people"
        )
    stored = model.loaded.feature_config
    if stored and FeatureConfig.from_dict(stored) != feature_config:
        raise ValueError(f"{url}: its features ({stored}) differ from this run's")
    return model
