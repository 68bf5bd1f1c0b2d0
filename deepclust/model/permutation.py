"""Permutation-invariant training (Kolbaek et al., "Multitalker speech separation with utterance-level
permutation invariant training", IEEE/ACM TASLP 25(10), 2017): the least total loss over every match of the
K outputs to the K targets, batched and differentiable.

    L = min_pi sum_c pair[c, pi(c)]

with the permutations of ``range(K)`` in ``itertools.permutations`` order. The metrics and the stitcher search
the same permutations in NumPy (``deepclust.metrics.permutation``); this torch form lives in the model layer,
below them, so that the losses need not import the metrics.
"""

from __future__ import annotations

import itertools

import torch


def _permutation_rows(n: int) -> list[tuple[int, ...]]:
    # Not cached: K! rows for K <= 4 cost nothing, and torch.compile traces a plain function without warning
    # that it "ignores the cache wrapper" (it did, once per compiled training run).
    return list(itertools.permutations(range(n)))


def min_over_permutations(pair: torch.Tensor) -> torch.Tensor:
    """The least ``sum_c pair[b, c, perm[c]]`` over every permutation ``perm``, per utterance.

    Args:
        pair: ``(batch, K, K)``: ``pair[b, i, j]`` is the loss of output ``i`` against target ``j``.

    Returns:
        ``(batch,)``, differentiable (the gradient flows to the best permutation's entries).

    >>> min_over_permutations(torch.tensor([[[1.0, 5.0], [2.0, 3.0]]]))
    tensor([4.])
    """
    if pair.ndim != 3 or pair.shape[1] != pair.shape[2]:
        raise ValueError(f"pair must be (batch, K, K), got {tuple(pair.shape)}")
    n = pair.shape[1]
    permutations = torch.tensor(_permutation_rows(n), device=pair.device).reshape(-1, n)  # (K!, K)
    per_permutation = pair[:, torch.arange(n, device=pair.device), permutations].sum(-1)  # (batch, K!)
    return per_permutation.min(dim=1).values
