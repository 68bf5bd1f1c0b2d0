"""Joining a long recording's windows into continuous tracks: speaker order, crossfade, running centroids.

k-means (and the mask head) number the sources arbitrarily in every window, so the K tracks of a window are
permuted to match the previous window: the permutation that maximises the summed inner product of the
separated signals over the overlap (= the least-squares match). When the overlap is too quiet to decide
(silence in both), the windows' cluster centroids in the embedding space are matched to the tracks' running
centroids instead. Consecutive windows are overlap-added with a raised-cosine crossfade, and every finished
stretch is appended to the K outputs at once; only the overlap of the last window is held.
"""

from __future__ import annotations

import collections
import math
import time

import numpy as np

from deepclust.audio.blocks import TrackWriter
from deepclust.metrics.permutation import matched_totals
from deepclust.separation.window_batch import WindowCentroids
from deepclust.separation.windows import Window

# Overlap alignment is trusted when the best permutation beats the second best by this fraction of the
# overlap's energy; below it (silence, or a speaker absent on both sides) the centroids decide.
MIN_OVERLAP_MARGIN = 0.05
# Brute force over K! permutations gives the margin to the runner-up; beyond this K, Hungarian only.
MAX_BRUTE_FORCE_SPEAKERS = 6
# Running centroid of a track: weight of the newest window (tracks drift slowly across a recording).
CENTROID_MOMENTUM = 0.5
# Windows that the running centroids are computed from: the 26th newest weighs 0.5^25 = 3e-8, below
# float32's resolution of a unit vector's components, so the truncated average is the full one.
TRACK_HISTORY = 26


def _best_assignment(scores: np.ndarray) -> tuple[tuple[int, ...], float]:
    """Permutation ``perm`` maximising ``sum_a scores[a, perm[a]]`` and its margin over the runner-up."""
    k = scores.shape[0]
    if k > MAX_BRUTE_FORCE_SPEAKERS:
        from scipy.optimize import linear_sum_assignment

        _, columns = linear_sum_assignment(-scores)
        return tuple(int(c) for c in columns), math.inf
    table, totals = matched_totals(scores)
    # Best first; a tie goes to the later permutation in itertools order (the comparison of the tuples).
    ranked = sorted(zip(totals.tolist(), map(tuple, table.tolist())), reverse=True)
    margin = ranked[0][0] - ranked[1][0] if len(ranked) > 1 else math.inf
    return ranked[0][1], margin


def align_permutation(
    previous: np.ndarray,
    current: np.ndarray,
    previous_centroids: np.ndarray | None = None,
    current_centroids: np.ndarray | None = None,
    min_margin: float = MIN_OVERLAP_MARGIN,
) -> tuple[tuple[int, ...], str]:
    """Which track of the current window continues each track of the previous one.

    Args:
        previous: ``(K, overlap)`` the previous window's (already aligned) tracks over the overlap.
        current: ``(K, overlap)`` the current window's tracks over the same samples.
        previous_centroids, current_centroids: ``(K, emb)``; the running centroids of the tracks and the
            current window's k-means centroids, used when the overlap cannot decide (or functions returning
            them, called only then).

    Returns:
        ``(perm, method)``: track ``a`` continues with ``current[perm[a]]``; method is "overlap" or
        "centroids". Maximising ``sum_a <previous_a, current_perm(a)>`` is the least-squares match
        (``sum_a |previous_a - current_perm(a)|^2`` differs from it by a constant).
    """
    previous = np.asarray(previous, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    energy = float((previous**2).sum() + (current**2).sum()) / 2
    perm, margin = _best_assignment(previous @ current.T)
    if energy > 0 and margin >= min_margin * energy:
        return perm, "overlap"
    # Either may come as a function that computes it: it is called only here, when the overlap cannot decide.
    previous_centroids = previous_centroids() if callable(previous_centroids) else previous_centroids
    current_centroids = current_centroids() if callable(current_centroids) else current_centroids
    if previous_centroids is not None and current_centroids is not None:
        a = previous_centroids / np.maximum(np.linalg.norm(previous_centroids, axis=1, keepdims=True), 1e-12)
        b = current_centroids / np.maximum(np.linalg.norm(current_centroids, axis=1, keepdims=True), 1e-12)
        return _best_assignment(a @ b.T)[0], "centroids"
    return perm, "overlap"


def crossfade(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Raised-cosine crossfade of ``(K, n)`` tracks over ``n`` samples; the gains sum to one."""
    n = previous.shape[-1]
    fade_in = np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2
    return (previous * (1.0 - fade_in) + current * fade_in).astype(np.float32)


class Stitcher:
    """Aligns each window's tracks with the previous window's and overlap-adds them into the writer.

    The tracks' running centroids (``CENTROID_MOMENTUM``) are needed only when an overlap cannot decide, so
    they are computed then, from the last ``TRACK_HISTORY`` windows' ``WindowCentroids`` and the
    permutation each was given; older windows weigh less than float32 can hold (``TRACK_HISTORY``).
    """

    def __init__(self, windows: list[Window], writer: TrackWriter):
        self.windows = windows
        self.writer = writer
        self.pending = None  # (K, overlap) tail of the previous window, not yet written
        self.history: collections.deque = collections.deque(maxlen=TRACK_HISTORY)  # (WindowCentroids, perm)
        self.aligned_by_centroids = 0
        self.reordered = 0  # windows whose k-means numbered the speakers differently from the tracks

    def track_centroids(self) -> np.ndarray | None:
        """``(K, emb)`` running centroid of each output track: ``c_0``, then ``(1 - m) T + m c_i`` per window."""
        running = None
        for centroids, perm in self.history:
            values = centroids()[list(perm)]
            running = values if running is None else (1 - CENTROID_MOMENTUM) * running + CENTROID_MOMENTUM * values
        return running

    def add(self, index: int, tracks: np.ndarray, centroids: WindowCentroids | None) -> float:
        """Take window ``index``'s ``(K, end - start)`` tracks; returns the seconds spent writing."""
        window = self.windows[index]
        perm = tuple(range(tracks.shape[0]))
        if self.pending is not None:
            overlap = self.pending.shape[1]
            perm, method = align_permutation(
                self.pending, tracks[:, :overlap], self.track_centroids if self.history else None, centroids
            )
            self.aligned_by_centroids += method == "centroids"
            tracks = tracks[list(perm)]
            self.reordered += perm != tuple(range(len(perm)))
            head = crossfade(self.pending, tracks[:, :overlap])
        else:
            overlap, head = 0, tracks[:, :0]
        if centroids is not None:
            self.history.append((centroids, perm))
        if index + 1 < len(self.windows):
            keep = self.windows[index + 1].start - window.start  # written now; the rest overlaps the next window
            body, self.pending = tracks[:, overlap:keep], tracks[:, keep:]
        else:
            body, self.pending = tracks[:, overlap:], None
        began = time.perf_counter()
        self.writer.write(np.concatenate([head, body], axis=1))
        return time.perf_counter() - began
