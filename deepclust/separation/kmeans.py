"""K-means on embeddings: the clustering step of deep clustering (Hershey et al., ICASSP 2016, sec. 3).

At test time the embeddings ``V`` of the time-frequency bins are clustered into K groups; each group is
one speaker's binary mask. Two back ends:

- ``kmeans_sklearn``: scikit-learn's KMeans on one utterance, the reference implementation.
- ``kmeans_torch``: batched Lloyd iterations in PyTorch over a padded batch of utterances, on CPU or
  GPU. Padded or silent bins are excluded from the centroid updates through ``valid``, but every bin
  (valid or not) receives the label of its nearest centroid, which is what the separator needs.
"""

from __future__ import annotations

import numpy as np
import torch
from threadpoolctl import threadpool_limits

# Restarts per utterance for both back ends; the best by inertia is kept. Three restarts make a
# bad k-means++ draw very unlikely on well-trained embeddings at little cost.
DEFAULT_N_INIT = 3


def kmeans_sklearn(
    embeddings: np.ndarray, k: int, seed: int = 0, n_init: int = DEFAULT_N_INIT, max_iter: int = 100
) -> np.ndarray:
    """Cluster one utterance's embeddings with scikit-learn (k-means++ init, best of ``n_init``).

    Args:
        embeddings: ``(N, D)`` points, e.g. the non-silent bins' embeddings ``(frames * freq, emb)``.
        k: number of clusters (speakers).
        seed: random state for the initialisation.

    Returns:
        labels ``(N,)`` int64 in ``[0, k)``.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got {embeddings.shape}")
    if embeddings.shape[0] < k:
        raise ValueError(f"cannot make {k} clusters from {embeddings.shape[0]} points")
    # Imported here, not at the top: scikit-learn (with the SciPy it pulls in) takes about 1.2 s to import, which
    # every command would pay at start-up; the default two-speaker inference (blend) never clusters this way.
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=int(k), n_init=int(n_init), max_iter=int(max_iter), random_state=int(seed))
    # One thread: a single utterance is too small for OpenMP to pay off, and when the cores are busy
    # (parallel units) its threads measured ~9x slower than one.
    with threadpool_limits(limits=1):
        return model.fit_predict(embeddings).astype(np.int64)


def _squared_distances(
    points: torch.Tensor, centroids: torch.Tensor, point_norms: torch.Tensor | None = None
) -> torch.Tensor:
    """``(B, N, D)``, ``(B, k, D)`` -> ``(B, N, k)`` squared Euclidean distances (clamped at 0).

    ``point_norms`` ``(B, N, 1)`` = ``|x|^2`` may be passed in: it is the costly term and never changes.
    """
    if point_norms is None:
        point_norms = (points * points).sum(-1, keepdim=True)
    d = torch.baddbmm(
        point_norms + (centroids * centroids).sum(-1).unsqueeze(1), points, centroids.transpose(1, 2), alpha=-2.0
    )
    return d.clamp_min_(0.0)


def _draw(weights: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One index per row of ``weights`` ``(B, N)`` >= 0 with probability proportional to the weight.

    Inverse-CDF sampling with the given ``uniforms`` ``(B,)`` in [0, 1): a point of zero weight is never
    drawn (``searchsorted(..., right=True)`` skips flat steps of the cumulative sum).
    """
    cumulative = weights.to(torch.float64).cumsum(1)
    targets = (uniforms.to(torch.float64) * cumulative[:, -1]).unsqueeze(1)
    return torch.searchsorted(cumulative, targets, right=True).squeeze(1).clamp_max_(weights.shape[1] - 1)


def _kmeans_plus_plus(points: torch.Tensor, valid: torch.Tensor, k: int, uniforms: torch.Tensor) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007), batched: ``(B, N, D)`` -> centroids ``(B, k, D)``.

    Each new centre is drawn among the valid points with probability proportional to the squared
    distance to the nearest centre chosen so far; ``uniforms`` ``(B, k)`` drive the draws.
    """
    batch, _, dim = points.shape
    weights = valid.to(points.dtype)
    rows = torch.arange(batch, device=points.device)
    centroids = points.new_empty(batch, k, dim)
    centroids[:, 0] = points[rows, _draw(weights, uniforms[:, 0])]
    nearest = _squared_distances(points, centroids[:, :1]).squeeze(-1)
    for c in range(1, k):
        probs = nearest * weights
        # All valid points coincide with chosen centres: fall back to a uniform draw among them.
        degenerate = probs.sum(1, keepdim=True) <= 0
        probs = torch.where(degenerate, weights, probs)
        centroids[:, c] = points[rows, _draw(probs, uniforms[:, c])]
        nearest = torch.minimum(nearest, _squared_distances(points, centroids[:, c : c + 1]).squeeze(-1))
    return centroids


def _lloyd(points, valid, centroids, n_iter, tol):
    """Batched Lloyd iterations. Returns ``(labels (B, N), centroids (B, k, D), inertia (B,))``."""
    batch, _, _ = points.shape
    k = centroids.shape[1]
    rows = torch.arange(batch, device=points.device)
    weights = valid.to(points.dtype)
    norms = (points * points).sum(-1, keepdim=True)
    # Convergence as scikit-learn: total squared centroid shift <= tol * mean per-dimension variance.
    count = weights.sum(1, keepdim=True)
    mean = (points * weights.unsqueeze(-1)).sum(1) / count
    variance = ((norms.squeeze(-1) * weights).sum(1) / count.squeeze(1) - (mean * mean).sum(1)) / points.shape[2]
    threshold = tol * variance.clamp_min(0.0)
    cluster_ids = torch.arange(k, device=points.device)
    labels = None
    for _ in range(n_iter):
        # |x|^2 is the same for every centroid, so the assignment needs only |c|^2 - 2 x.c.
        scores = torch.baddbmm(
            (centroids * centroids).sum(-1).unsqueeze(1), points, centroids.transpose(1, 2), alpha=-2.0
        )  # (B, N, k)
        new_labels = scores.argmin(-1)
        assign = ((new_labels.unsqueeze(-1) == cluster_ids) & valid.unsqueeze(-1)).to(points.dtype)  # (B, N, k)
        counts = assign.sum(1)  # (B, k)
        sums = torch.einsum("bnk,bnd->bkd", assign, points)  # (B, k, D)
        previous = centroids
        centroids = torch.where(counts.unsqueeze(-1) > 0, sums / counts.clamp_min(1).unsqueeze(-1), centroids)
        # An empty cluster would stay empty for ever: move it to the valid point that is worst
        # served by the current centroids (one point per empty cluster, so two never coincide).
        empty = counts == 0
        if bool(empty.any()):
            distances = scores.gather(-1, new_labels.unsqueeze(-1)).squeeze(-1) + norms.squeeze(-1)
            worst = distances * weights - (1 - weights)
            for c in range(k):
                items = empty[:, c]
                if bool(items.any()):
                    far = worst.argmax(1)
                    centroids[items, c] = points[rows[items], far[items]]
                    worst[rows[items], far[items]] = -1.0
        if not bool(empty.any()):
            shift = ((centroids - previous) ** 2).sum((1, 2))
            if bool((shift <= threshold).all()) or (labels is not None and torch.equal(new_labels, labels)):
                break
        labels = new_labels
    distances = _squared_distances(points, centroids, norms)
    best, labels = distances.min(-1)
    inertia = (best * weights).sum(1)
    return labels, centroids, inertia


@torch.no_grad()
def kmeans_torch(
    embeddings: torch.Tensor,
    valid: torch.Tensor | None,
    k: int,
    n_iter: int = 30,
    seed: int = 0,
    n_init: int = DEFAULT_N_INIT,
    tol: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched k-means (k-means++ init, Lloyd iterations, best of ``n_init`` by inertia).

    All utterances and all restarts run together as one batch of matrix products, which is what makes
    this faster than a per-utterance scikit-learn loop on long test sets (and it runs on the GPU).

    Args:
        embeddings: ``(batch, N, emb)`` points, N = frames * freq (padded to the longest utterance).
        valid: ``(batch, N)`` bool, True for the points that define the clusters (non-padded,
            non-silent bins); None = all valid. An item with no valid point uses all its points.
        k: number of clusters (speakers).
        n_iter: maximum Lloyd iterations (stops early when no label changes).
        seed: seeds the k-means++ draws. Every item gets the same draws, so an utterance's clustering
            does not depend on the other utterances in the batch (``separate_batch`` = ``separate``).
        n_init: restarts per item.
        tol: stop when every item's total squared centroid shift is below ``tol`` times its mean
            per-dimension variance (scikit-learn's rule), or when no label changes.

    Returns:
        labels ``(batch, N)`` int64: nearest centroid of every point, valid or not;
        centroids ``(batch, k, emb)``.
    """
    if embeddings.ndim != 3:
        raise ValueError(f"embeddings must be (batch, N, emb), got {tuple(embeddings.shape)}")
    batch, n_points, dim = embeddings.shape
    points = embeddings.detach()
    if not points.is_floating_point():
        points = points.float()
    if valid is None:
        valid = torch.ones(batch, n_points, dtype=torch.bool, device=points.device)
    valid = valid.to(device=points.device, dtype=torch.bool)
    if valid.shape != (batch, n_points):
        raise ValueError(f"valid must be {(batch, n_points)}, got {tuple(valid.shape)}")
    valid = torch.where(valid.any(1, keepdim=True), valid, torch.ones_like(valid))

    generator = torch.Generator()
    generator.manual_seed(int(seed))
    uniforms = torch.rand(n_init, int(k), generator=generator, dtype=torch.float64)
    # Restarts are extra batch items: (n_init * batch, N, D), restart-major.
    tiled_points = points.repeat(n_init, 1, 1)
    tiled_valid = valid.repeat(n_init, 1)
    tiled_uniforms = uniforms.to(points.device).repeat_interleave(batch, dim=0)  # (n_init * batch, k)
    centroids = _kmeans_plus_plus(tiled_points, tiled_valid, int(k), tiled_uniforms)
    labels, centroids, inertia = _lloyd(tiled_points, tiled_valid, centroids, int(n_iter), float(tol))
    best = inertia.view(n_init, batch).argmin(0)  # (batch,)
    items = torch.arange(batch, device=points.device)
    labels = labels.view(n_init, batch, n_points)[best, items]
    centroids = centroids.view(n_init, batch, int(k), dim)[best, items]
    return labels, centroids
