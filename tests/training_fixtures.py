"""Fixtures of the dynamic-mixing training tests: a small speaker-labelled corpus of real LibriSpeech readers."""

from __future__ import annotations

import pytest

from deepclust.corpora.sources import CorpusSource, prepare_sources


@pytest.fixture(scope="module")
def corpus(corpora_dir, tmp_path_factory):
    """Eight LibriSpeech readers (one utterance each), linked into a small corpus folder; six train, two test."""
    root = tmp_path_factory.mktemp("corpus") / "libri"
    root.mkdir()
    source = corpora_dir / "librispeech-speakers"
    for speaker in sorted(p.name for p in source.iterdir() if p.is_dir())[:8]:
        (root / speaker).symlink_to(source / speaker)
    return prepare_sources([CorpusSource(str(root), "librispeech")], test_fraction=0.25, seed=0)


def tiny_train_config(epochs: int, **changes):
    """Seconds-long training on ``corpus``: 2 steps of 3 chunks of 30 frames an epoch, whitened DC loss, seed 0."""
    from deepclust.training.config import TrainConfig

    settings = dict(
        chunk_frames=30, batch_size=3, steps_per_epoch=2, patience=9, device="cpu", seed=0, dc_loss="whitened"
    )
    return TrainConfig(max_epochs=epochs, **{**settings, **changes})
