"""The best match of K outputs to K references: the search over all K! permutations, for NumPy scores.

The metrics (BSS-eval's largest mean SIR, SI-SDR's largest mean SI-SDR) and the long-recording stitcher
(the largest summed overlap) all pick one permutation from a pairwise score matrix. ``scores[a, b]`` scores
row ``a`` matched with column ``b``; a permutation ``perm`` matches row ``a`` with column ``perm[a]`` and
totals ``sum_a scores[a, perm[a]]``. Permutations are listed in ``itertools.permutations`` order, so a tie
goes to the first, as mir_eval's ``np.argmax`` does.

The training losses do the same search in torch, batched and differentiable
(``deepclust.model.permutation``, the same order): the model layer sits below this one, and the metrics
stay free of torch.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np


@functools.lru_cache(maxsize=None)
def permutation_table(n: int) -> np.ndarray:
    """``(n!, n)`` int64: every permutation of ``range(n)``, one a row, in ``itertools.permutations`` order.

    >>> permutation_table(2)
    array([[0, 1],
           [1, 0]])
    """
    table = np.array(list(itertools.permutations(range(n))), dtype=np.int64).reshape(-1, n)
    table.flags.writeable = False  # cached and shared by every caller
    return table


def matched_totals(scores) -> tuple[np.ndarray, np.ndarray]:
    """Every permutation's total ``sum_a scores[..., a, perm[a]]``.

    Args:
        scores: ``(..., K, K)``: ``scores[..., a, b]`` scores row ``a`` matched with column ``b``.

    Returns:
        ``(table, totals)``: ``permutation_table(K)`` ``(K!, K)`` and ``totals`` ``(..., K!)``.

    >>> matched_totals(np.array([[1.0, 5.0], [2.0, 3.0]]))[1]
    array([4., 7.])
    """
    scores = np.asarray(scores)
    if scores.ndim < 2 or scores.shape[-1] != scores.shape[-2]:
        raise ValueError(f"scores must be (..., K, K), got {scores.shape}")
    table = permutation_table(scores.shape[-1])
    rows = np.arange(scores.shape[-1])
    return table, scores[..., rows, table].sum(-1)  # gathered (..., K!, K), summed over the K pairs


def best_match(scores) -> np.ndarray:
    """``perm`` ``(K,)``: row ``a`` goes with column ``perm[a]``, the largest mean score (ties: the first).

    Args:
        scores: ``(K, K)``.

    >>> best_match(np.array([[1.0, 5.0], [2.0, 3.0]]))
    array([1, 0])
    """
    table, totals = matched_totals(scores)
    # The mean, not the sum: the metrics' rule (mir_eval's), with the same rounding and so the same ties.
    return table[int(np.argmax(totals / table.shape[1]))].copy()
