"""The deep clustering objective (Hershey et al., ICASSP 2016, Eq. 2-3).

    C(V, Y) = |V V^T - Y Y^T|_F^2 = |V^T V|_F^2 - 2 |V^T Y|_F^2 + |Y^T Y|_F^2        (Eq. 3)

V ``(N, D)`` holds one embedding per time-frequency bin, Y ``(N, C)`` the one-hot ideal binary mask
(source index of the dominant source). The right-hand form costs O(N D^2) and never forms the
N x N affinity matrices, which is what makes training on whole utterances feasible.

Silent bins carry no source information, so the paper excludes bins more than 40 dB below the
mixture's maximum. With per-bin weights w in {0, 1} (or any w >= 0) we scale the rows of V and Y by
sqrt(w), giving

    sum_ij w_i w_j (v_i . v_j - y_i . y_j)^2 = |W^1/2 (V V^T - Y Y^T) W^1/2|_F^2.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def check_embedding_shapes(embeddings: torch.Tensor, targets: torch.Tensor) -> None:
    """``ValueError`` naming the expected shapes: embeddings ``(batch, N, D)``, targets ``(batch, N)``."""
    if embeddings.ndim != 3:
        raise ValueError(f"embeddings must be (batch, N, D), got {tuple(embeddings.shape)}")
    if targets.shape != embeddings.shape[:2]:
        raise ValueError(f"targets {tuple(targets.shape)} do not match embeddings {tuple(embeddings.shape)}")


def deep_clustering_loss(
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None,
    n_sources: int,
) -> torch.Tensor:
    """Weighted deep clustering loss, averaged over the batch.

    Args:
        embeddings: ``(batch, N, D)`` embeddings V, N = frames * freq (any float dtype).
        targets: ``(batch, N)`` int64 index of the dominant source of each bin, in ``[0, n_sources)``.
        weights: ``(batch, N)`` non-negative bin weights (1 = active, 0 = silent or padding), or None for all ones.
        n_sources: number of sources C (columns of the one-hot Y).

    Returns:
        Scalar tensor: for each utterance ``|V^T V|^2 - 2|V^T Y|^2 + |Y^T Y|^2`` on the sqrt(weight)-scaled
        rows, divided by ``(sum of weights)^2`` - the number of entries of the (active) affinity matrix,
        so that the value is a mean squared affinity error in [0, 4] independent of utterance length -
        then averaged over the batch. An utterance whose weights are all zero contributes 0.

    Computed in float32 (or float64 if the embeddings are float64) with autocast disabled, because the
    Gram matrices sum N ~ 10^4 products and lose every significant digit in half precision.
    """
    check_embedding_shapes(embeddings, targets)
    one_hot = F.one_hot(targets.long(), n_sources)  # Y: (batch, N, C)
    return affinity_distance(embeddings, one_hot, weights)


def affinity_distance(v: torch.Tensor, u: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``|V V^T - U U^T|_F^2 / (sum w)^2`` per utterance on sqrt(w)-scaled rows, batch mean (Eq. 3's right-hand
    form, never N x N). ``v`` ``(batch, N, D)``, ``u`` ``(batch, N, C)`` (the one-hot targets, or a teacher's
    embeddings), ``weights`` ``(batch, N)`` or None for all ones. Float32 (float64 for float64 ``v``), autocast off."""
    dtype = torch.promote_types(v.dtype, torch.float32)
    with torch.autocast(device_type=v.device.type, enabled=False):
        v, u = v.to(dtype), u.to(dtype)
        if weights is None:
            weights = torch.ones(v.shape[:2], dtype=dtype, device=v.device)
        weights = weights.to(dtype)
        root_weights = weights.clamp_min(0).sqrt().unsqueeze(-1)  # (batch, N, 1)
        weighted_v = v * root_weights
        weighted_u = u * root_weights

        vtv = weighted_v.transpose(1, 2) @ weighted_v  # (batch, D, D)
        vtu = weighted_v.transpose(1, 2) @ weighted_u  # (batch, D, C)
        utu = weighted_u.transpose(1, 2) @ weighted_u  # (batch, C, C)
        per_utterance = vtv.square().sum((1, 2)) - 2 * vtu.square().sum((1, 2)) + utu.square().sum((1, 2))

        # Normalise by the number of weighted affinity entries; clamp so an all-silent chunk gives 0, not NaN.
        normaliser = weights.sum(1).square().clamp_min(1e-12)
        return (per_utterance / normaliser).mean()
