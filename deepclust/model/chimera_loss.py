"""The Chimera++ objectives (Wang, Le Roux, Hershey, "Alternative objective functions for deep clustering",
ICASSP 2018): a whitened deep clustering loss for the embedding head and a truncated phase-sensitive
mask-inference loss for the mask head, trained together as ``alpha * L_DC + (1 - alpha) * L_MI``.

Whitened k-means objective (their Eq. 6), V ``(N, D)`` embeddings, Y ``(N, C)`` one-hot IBM:

    L_DC,W = |V (V^T V)^-1/2 - Y (Y^T Y)^-1 Y^T V (V^T V)^-1/2|_F^2 = D - tr((V^T V)^-1 V^T Y (Y^T Y)^-1 Y^T V)

The trace is that of the product of two projections (onto the span of V and of Y), so it lies in [0, C];
we return ``1 - trace / C`` (same gradient direction, in [0, 1], 0 when the embeddings span exactly the
sources' indicator space) so that it can be weighed against the mask loss without a magic constant.

Truncated phase-sensitive approximation (their Eq. 10), permutation-invariant (Kolbaek et al. 2017):

    L_MI = min_pi sum_c | M_c * |X| - T_0^{|X|}( |S_pi(c)| cos(theta_S - theta_X) ) |_1

T_0^{|X|} clips to [0, |X|] (gamma = 1: our masks are sigmoids, so M |X| cannot exceed |X| anyway). We
divide by ``sum |X|`` per utterance: a relative error, independent of loudness and length.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from deepclust.model.loss import check_embedding_shapes
from deepclust.model.permutation import min_over_permutations


class _WeightedProjectionTrace(torch.autograd.Function):
    """``q_b = sum_c w_bc y_bc^T v_b (v_b^T v_b + eps I)^-1 v_b^T y_bc`` per utterance, with its gradient written out.

    Autograd through ``v^T v``, ``v^T y`` and ``solve`` ran four or five batched matmuls over all N bins in
    the backward pass (8 % of a CPU training step by profile). Written out (S = (V^T V)^-1 V^T Y, W = diag(w)):

        dq/dv = 2 (y - v S) W S^T

    two thin matmuls whose inner sizes are C and D.
    """

    @staticmethod
    def forward(ctx, v, y, w, eps):
        dim = v.shape[-1]
        vtv = v.transpose(1, 2) @ v + eps * torch.eye(dim, dtype=v.dtype, device=v.device)  # (batch, D, D)
        vty = v.transpose(1, 2) @ y  # (batch, D, C)
        solved = torch.linalg.solve(vtv, vty)  # (batch, D, C): solve instead of inverting
        ctx.save_for_backward(v, y, w, solved)
        return ((solved * vty).sum(1) * w).sum(1)

    @staticmethod
    def backward(ctx, grad_q):
        v, y, w, solved = ctx.saved_tensors
        residual = y - v @ solved  # (batch, N, C)
        coefficients = (2 * w * grad_q.unsqueeze(1)).unsqueeze(1)  # (batch, 1, C)
        return (residual * coefficients) @ solved.transpose(1, 2), None, None, None


def whitened_deep_clustering_loss(
    embeddings: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None, n_sources: int, eps: float = 1e-6
) -> torch.Tensor:
    """Whitened deep clustering loss ``1 - tr((V^T V)^-1 V^T Y (Y^T Y)^-1 Y^T V) / C``, batch mean.

    Args:
        embeddings: ``(batch, N, D)`` embeddings V, N = frames * freq.
        targets: ``(batch, N)`` int64 dominant-source index in ``[0, n_sources)``.
        weights: ``(batch, N)`` non-negative bin weights (0 = silent or padding), or None for all ones.
        n_sources: C. Sources absent from an utterance (no weighted bin) do not count in its C.
        eps: ridge added to ``V^T V`` and ``Y^T Y`` so that an (almost) rank-deficient utterance stays finite.
    """
    check_embedding_shapes(embeddings, targets)
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        embeddings = embeddings.to(dtype)
        one_hot = F.one_hot(targets.long(), n_sources).to(dtype)  # (batch, N, C)
        if weights is None:
            weights = torch.ones(targets.shape, dtype=dtype, device=embeddings.device)
        root_weights = weights.to(dtype).clamp_min(0).sqrt().unsqueeze(-1)
        v, y = embeddings * root_weights, one_hot * root_weights
        counts = y.sum(1)  # (batch, C): the diagonal of Y^T Y
        present = (counts > 0).to(dtype)
        # The trace is sum_c y_c^T V (V^T V)^-1 V^T y_c / counts_c over present sources; absent ones add 0.
        n_present = present.sum(1, keepdim=True).clamp_min(1)
        per_source = present / counts.clamp_min(eps) / n_present  # (batch, C)
        return (1.0 - _WeightedProjectionTrace.apply(v, y, per_source, eps)).mean()


def phase_sensitive_targets(
    mixture_spectra: torch.Tensor, source_spectra: torch.Tensor, mixture_magnitude: torch.Tensor | None = None
) -> torch.Tensor:
    """Truncated PSA targets ``clip(|S_c| cos(theta_S - theta_X), 0, |X|)``.

    Args:
        mixture_spectra: complex ``(batch, frames, freq)`` X.
        source_spectra: complex ``(batch, C, frames, freq)`` S_c.
        mixture_magnitude: ``|X|`` when the caller has it already.

    Returns:
        float ``(batch, C, frames, freq)``.
    """
    magnitude = (mixture_spectra.abs() if mixture_magnitude is None else mixture_magnitude).unsqueeze(1)
    # |S| cos(theta_S - theta_X) = Re(S conj(X)) / |X|
    projected = (source_spectra * mixture_spectra.conj().unsqueeze(1)).real / magnitude.clamp_min(1e-8)
    return torch.minimum(projected.clamp_min(0.0), magnitude)


def mask_inference_loss(
    masks: torch.Tensor, mixture_magnitude: torch.Tensor, psa_targets: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Permutation-invariant truncated-PSA L1 loss, per utterance ``/ sum |X|``, batch mean.

    Args:
        masks: ``(batch, C, frames, freq)`` estimated masks in [0, 1].
        mixture_magnitude: ``(batch, frames, freq)`` |X|.
        psa_targets: ``(batch, C, frames, freq)`` from :func:`phase_sensitive_targets`.
        valid: optional ``(batch, frames, freq)`` 0/1 (padding = 0).
    """
    if masks.ndim != 4 or masks.shape != psa_targets.shape:
        raise ValueError(
            f"masks {tuple(masks.shape)} and targets {tuple(psa_targets.shape)} must both be (batch, C, frames, freq)"
        )
    with torch.autocast(device_type=masks.device.type, enabled=False):
        masks, magnitude, psa_targets = masks.float(), mixture_magnitude.float(), psa_targets.float()
        if valid is not None:
            magnitude = magnitude * valid.float()
            psa_targets = psa_targets * valid.float().unsqueeze(1)
        estimates = masks * magnitude.unsqueeze(1)
        # |estimate_i - target_j| summed over bins: (batch, C, C); each permutation picks one per row.
        pair_errors = (estimates.unsqueeze(2) - psa_targets.unsqueeze(1)).abs().flatten(3).sum(-1)
        best = min_over_permutations(pair_errors)
        return (best / magnitude.flatten(1).sum(1).clamp_min(1e-8)).mean()
