"""A trained model as a teacher: its embeddings and masks of each training batch become extra targets.

Issue 31's arm (c): a network of another shape (e.g. ``chimera++-conv2``, parallel in time) cannot warm-start
from the shipped BLSTM's weights, so it learns from its outputs instead, beside the true targets, and need not
rediscover from zero what seven links of training found. The teacher reads the very inputs the student reads
(the same features, normalised with the teacher's own statistics: ``train_dynamic`` makes the run use them).

Only training batches are annotated: validation batches keep the true targets alone, so a taught run's
validation loss is the same quantity as any other run's and early stopping compares like with like.
"""

from __future__ import annotations

from typing import Iterator

import torch

from deepclust.model.device import autocast, usable_device
from deepclust.model.lineage import ParentModel
from deepclust.training.config import TrainConfig
from deepclust.training.steps import amp_dtype_of


def check_weight(weight: float) -> None:
    """The teacher's share of each step's loss must lie strictly between 0 (no teacher) and 1 (no true targets)."""
    if not 0.0 < weight < 1.0:
        raise ValueError(f"the teacher's weight must be between 0 and 1 (exclusive), got {weight}")


class Teacher:
    """A model file's network, frozen, that annotates batches with ``teacher_embeddings`` (and ``teacher_masks``)
    and ``teacher_weight``, the share of the step's loss given to matching them (the true targets keep the rest).

    The weight travels with the batches rather than in ``TrainConfig``, whose dict form is part of every stage
    key: a setting only ``train-dynamic`` has must not change the recipe's keys."""

    def __init__(self, parent: ParentModel, train_config: TrainConfig, weight: float = 0.5):
        check_weight(weight)
        self.parent, self.weight = parent, weight
        self.device = usable_device(train_config.device)
        self.amp_dtype = amp_dtype_of(train_config, self.device)
        self.model = parent.loaded.model.float().to(self.device).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def annotate(self, batch: dict) -> dict:
        """``batch`` plus the teacher's outputs on its ``log_mag``: embeddings ``(batch, frames, freq, D)`` and,
        where the teacher has a mask head for this batch's number of talkers, masks ``(batch, K, frames, freq)``."""
        log_mag = batch["log_mag"].to(self.device)
        with autocast(self.device, self.amp_dtype):
            outputs = self.model.infer(log_mag, embeddings=True, masks=True)
        annotated = {**batch, "teacher_embeddings": outputs["embeddings"].float(), "teacher_weight": self.weight}
        masks = outputs.get("masks")
        talkers = batch["sources"].shape[1] if "sources" in batch else None
        if masks is not None and (talkers is None or talkers == masks.shape[1]):
            annotated["teacher_masks"] = masks.float()
        return annotated

    def link(self) -> dict:
        """What the student's lineage records of its teacher (its sha256 is added by the training run)."""
        extra = self.parent.loaded.extra
        return {
            "model": self.parent.url.rsplit("/", 1)[-1],
            "model_config": self.parent.loaded.model_config.to_dict(),
            "global_step": extra.get("global_step"),
            "weight": self.weight,
        }


class TaughtBatches:
    """A batch source (``DynamicMixing``) whose training batches carry the teacher's outputs too."""

    def __init__(self, source, teacher: Teacher):
        self.source, self.teacher = source, teacher
        self.feature_stats = source.feature_stats

    def training_batches(self, seed_sequence, chunk_frames: int, batch_size: int, steps: int) -> Iterator[dict]:
        for batch in self.source.training_batches(seed_sequence, chunk_frames, batch_size, steps):
            yield self.teacher.annotate(batch)

    def validation_batches(self, chunk_frames: int, batch_size: int) -> list[dict]:
        return self.source.validation_batches(chunk_frames, batch_size)
