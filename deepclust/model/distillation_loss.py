"""Matching a teacher network (knowledge distillation): the student's embeddings and masks against a trained
model's, beside the true targets (issue 31's arm (c): a new network taught by the shipped one).

Embeddings, V ``(N, D_s)`` the student's, U ``(N, D_t)`` the teacher's (D may differ), as Eq. 3 of Hershey et
al. with the teacher's affinity in place of the ideal one:

    |V V^T - U U^T|_F^2 = |V^T V|_F^2 - 2 |V^T U|_F^2 + |U^T U|_F^2

again without forming the N x N affinities, weighted and normalised as ``deep_clustering_loss`` (a mean squared
affinity error in [0, 4]). Only the geometry is matched: any rotation of the teacher's space is as good.

Masks: the truncated-PSA L1 of ``mask_inference_loss`` with the teacher's masked magnitudes ``M_t |X|`` as the
targets (permutation-invariant: the student's mask order is its own).
"""

from __future__ import annotations

import torch

from deepclust.model.chimera_loss import mask_inference_loss
from deepclust.model.loss import affinity_distance


def affinity_matching_loss(
    student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``|V V^T - U U^T|^2 / (sum w)^2`` per utterance on sqrt(w)-scaled rows, batch mean; float32.

    ``student`` ``(batch, N, D_s)``, ``teacher`` ``(batch, N, D_t)``, ``weights`` ``(batch, N)`` or None.
    0 when the two embeddings have the same affinities (e.g. the same network). The deep clustering loss's own
    computation (``deepclust.model.loss.affinity_distance``) with the teacher's embeddings in place of Y.
    """
    if student.ndim != 3 or teacher.shape[:2] != student.shape[:2]:
        raise ValueError(
            f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} must be (batch, N, D) with one N"
        )
    return affinity_distance(student, teacher, weights)


def distillation_loss(
    embeddings: torch.Tensor,
    masks: torch.Tensor | None,
    teacher_embeddings: torch.Tensor,
    teacher_masks: torch.Tensor | None,
    weight: torch.Tensor,
    mixture_mag: torch.Tensor | None,
) -> torch.Tensor:
    """The student's distance to the teacher: affinity matching of the embeddings, plus the mask loss against
    the teacher's masks where both have masks for the same number of sources (and the magnitudes are given).

    ``embeddings`` ``(batch, frames, freq, D_s)``, ``teacher_embeddings`` ``(batch, frames, freq, D_t)``;
    ``masks`` / ``teacher_masks`` ``(batch, K, frames, freq)``; ``weight``, ``mixture_mag`` ``(batch, frames, freq)``.
    """
    loss = affinity_matching_loss(embeddings.flatten(1, 2), teacher_embeddings.flatten(1, 2), weight.flatten(1))
    if masks is not None and teacher_masks is not None and mixture_mag is not None:
        if masks.shape == teacher_masks.shape:
            targets = teacher_masks.float() * mixture_mag.float().unsqueeze(1)
            loss = loss + mask_inference_loss(masks, mixture_mag, targets)
    return loss
